"""The layers of KVM-MN (Zhang, Li and Zhang, AAAI 2019), one per concept of its Section "Key-Value Memory
Matching Network", each citing the equation it implements.

Shapes: `L` is the number of feature-map locations (rows x cols, unrolled row-major), `H` the number of heads,
`d` the feature width, `d_k` / `d_v` / `d_o` / `d_c` the key / value / co-attention output / comparison widths.
Leading dimensions written `...` may be any batch shape; `CoAttention` broadcasts them, which is what lets the
model score Q queries against G gallery images in one call (`[Q, 1, ...]` against `[1, G, ...]`).

`phi` in Eq. 2, 4 and 5 is "the ReLU activation after Batch Normalization"; it is `BatchNormReLU` here. The
linear maps that phi follows carry no bias, since the batch norm's beta already is one.
"""
from __future__ import annotations

import math

import keras
from keras import ops

PACKAGE = "kvmmn"


def _glorot(seed: int | None, offset: int = 0) -> keras.initializers.Initializer:
    """Glorot-uniform (Keras's default) with a reproducible seed; a distinct `offset` per kernel of one layer,
    because an integer-seeded initializer repeats its values for every variable of the same shape."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def _merge_last_two(x):
    """[..., a, b] -> [..., a * b]."""
    return ops.reshape(x, tuple(ops.shape(x)[:-2]) + (x.shape[-2] * x.shape[-1],))


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding2D(keras.layers.Layer):
    """Adds the sinusoidal position embedding of Eq. 1 to a feature map: f_l <- f_l + p_l.

    For the location in column x and row y of the feature map (0-based indices) and i = 0, ..., d/4 - 1:

        p(2i)         = sin(x / 10000^(4i/d))      p(2i + d/2)     = sin(y / 10000^(4i/d))
        p(2i + 1)     = cos(x / 10000^(4i/d))      p(2i + 1 + d/2) = cos(y / 10000^(4i/d))

    so the first d/2 channels encode x and the last d/2 encode y. The paper writes i = 1, ..., d/4: taken
    literally, channels 0 and 1 stay empty and i = d/4 writes y to channels d and d + 1, which do not exist; with
    i = 0, ..., d/4 - 1 the two halves tile the d channels exactly (WORKSPACE.md, "Readings of the papers").
    d must be a multiple of 4.

    Input and output: [batch, rows, cols, d]. No weights; rows and cols may be unknown until call time.
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if max_wavelength <= 0:
            raise ValueError(f"max_wavelength={max_wavelength} must be > 0")
        self.max_wavelength = float(max_wavelength)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None or input_shape[-1] % 4:
            raise ValueError(f"{self.name}: expects [batch, rows, cols, d] with d a multiple of 4 (Eq. 1 gives d/4 "
                             f"frequencies to each of sin x, cos x, sin y, cos y); got shape {input_shape}")

    def _axis_embedding(self, length, depth: int):
        """[length, depth/2]: sin and cos of position / 10000^(4i/d) interleaved, i = 0 .. d/4 - 1."""
        positions = ops.cast(ops.arange(length), self.compute_dtype)
        exponents = ops.cast(ops.arange(depth // 4), self.compute_dtype) * (4.0 / depth)
        angles = positions[:, None] / ops.power(self.max_wavelength, exponents)[None, :]
        return ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (-1, depth // 2))

    def call(self, features):
        rows, cols, depth = ops.shape(features)[1], ops.shape(features)[2], features.shape[-1]
        x_part = ops.broadcast_to(self._axis_embedding(cols, depth)[None, :, :], (rows, cols, depth // 2))
        y_part = ops.broadcast_to(self._axis_embedding(rows, depth)[:, None, :], (rows, cols, depth // 2))
        return features + ops.concatenate([x_part, y_part], axis=-1)[None]

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormReLU(keras.layers.Layer):
    """phi of Eq. 2, 4 and 5: "the ReLU activation after Batch Normalization", per channel (last axis).

    Accepts any rank: every leading axis is a batch axis, so the same weights serve [P, L, C] pair batches in
    training and [Q, G, L, C] score grids in retrieval.

    The paper gives no batch-norm momentum or epsilon: Keras's defaults, 0.99 and 1e-3 (WORKSPACE.md, readings).
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.batch_norm = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="batch_norm")

    def build(self, input_shape):
        self.batch_norm.build((None, input_shape[-1]))

    def call(self, inputs, training=None):
        normalized = self.batch_norm(ops.reshape(inputs, (-1, inputs.shape[-1])), training=training)
        return ops.reshape(ops.relu(normalized), ops.shape(inputs))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class KeyValueMemory(keras.layers.Layer):
    """The multi-head key-value memory of Eq. 2: K_h = phi(F W_k,h), V_h = phi(F W_v,h), h = 1..H.

    The H projections W_k,h in R^{d x d_k} are one [d, H d_k] matrix (likewise for the values), and phi's batch
    norm is per channel, so it normalises each head's channels on their own exactly as H separate layers would.

    `shared_key_value=True` is Table 3 row (A) "K = V": one projection serves as both keys and values (then
    d_k must equal d_v).

    Input: F as [..., L, d]. Output: (keys [..., L, H, d_k], values [..., L, H, d_v]).
    """

    def __init__(self, num_heads: int, key_dim: int, value_dim: int, shared_key_value: bool = False,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for field, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if int(value) < 1:
                raise ValueError(f"{field}={value} must be >= 1")
        if shared_key_value and key_dim != value_dim:
            raise ValueError(f"shared_key_value=True (Table 3 row A, K = V) needs key_dim == value_dim; got "
                             f"key_dim={key_dim}, value_dim={value_dim}")
        self.num_heads, self.key_dim, self.value_dim = int(num_heads), int(key_dim), int(value_dim)
        self.shared_key_value = bool(shared_key_value)
        self.seed = seed
        self.key_projection = keras.layers.Dense(self.num_heads * self.key_dim, use_bias=False,
                                                 kernel_initializer=_glorot(seed, 0), name="key_projection")
        self.key_phi = BatchNormReLU(name="key_phi")
        if not self.shared_key_value:
            self.value_projection = keras.layers.Dense(self.num_heads * self.value_dim, use_bias=False,
                                                       kernel_initializer=_glorot(seed, 1), name="value_projection")
            self.value_phi = BatchNormReLU(name="value_phi")

    def build(self, input_shape):
        self.key_projection.build(input_shape)
        self.key_phi.build(tuple(input_shape[:-1]) + (self.num_heads * self.key_dim,))
        if not self.shared_key_value:
            self.value_projection.build(input_shape)
            self.value_phi.build(tuple(input_shape[:-1]) + (self.num_heads * self.value_dim,))

    def _heads(self, x, width: int):
        return ops.reshape(x, tuple(ops.shape(x)[:-1]) + (self.num_heads, width))

    def call(self, features, training=None):
        keys = self._heads(self.key_phi(self.key_projection(features), training=training), self.key_dim)
        if self.shared_key_value:
            return keys, keys
        values = self._heads(self.value_phi(self.value_projection(features), training=training), self.value_dim)
        return keys, values

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "shared_key_value": self.shared_key_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CoAttention(keras.layers.Layer):
    """Multi-head co-attention, Eq. 3: r_h = softmax(K_h k_h^r / mu)^T V_h with mu = sqrt(d_k).

    Every reference key k_h^r (one per reference location and head) addresses the memory (K_h, V_h) by content:
    a softmax over the memory's L locations, then the attention-weighted mean of the values. The model passes
    image A's keys as the references ("we use all the keys in {K_h^A}"), once with A's own memory (giving r^A)
    and once with B's (giving r^B). No weights.

    Inputs: reference_keys [..., L_r, H, d_k], keys [..., L, H, d_k], values [..., L, H, d_v]; the leading
    dimensions broadcast against each other. Output: reads [..., L_r, H, d_v], and with
    `return_attention_scores=True` also the attention [..., H, L_r, L] (each row sums to 1 over L).
    """

    def call(self, reference_keys, keys, values, return_attention_scores: bool = False):
        references = ops.moveaxis(reference_keys, -2, -3)                  # [..., H, L_r, d_k]
        logits = ops.matmul(references, ops.moveaxis(keys, -3, -1))         # [..., H, L_r, L]
        attention = ops.softmax(logits / math.sqrt(reference_keys.shape[-1]), axis=-1)
        reads = ops.moveaxis(ops.matmul(attention, ops.moveaxis(values, -2, -3)), -3, -2)
        return (reads, attention) if return_attention_scores else reads


class _LinearPhi(keras.layers.Layer):
    """Shared by Eq. 4 and 5: a bias-free linear map to `output_dim` channels followed by phi."""

    def __init__(self, output_dim: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(output_dim) < 1:
            raise ValueError(f"output_dim={output_dim} must be >= 1")
        self.output_dim = int(output_dim)
        self.seed = seed
        self.phi = BatchNormReLU(name="phi")

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CoAttentionFusion(_LinearPhi):
    """Fusing the H heads' reads, Eq. 4: o = phi(W_o^T [r_1, ..., r_H]) with W_o in R^{H d_v x d_o}.

    One layer serves both images of a pair (the paper has a single W_o). Input [..., L, H, d_v]; output
    [..., L, d_o].
    """

    def __init__(self, output_dim: int, seed: int | None = None, **kwargs):
        super().__init__(output_dim, seed=seed, **kwargs)
        self.projection = keras.layers.Dense(self.output_dim, use_bias=False, kernel_initializer=_glorot(seed),
                                             name="projection")

    def build(self, input_shape):
        merged = tuple(input_shape[:-2]) + (input_shape[-2] * input_shape[-1],)
        self.projection.build(merged)
        self.phi.build(merged[:-1] + (self.output_dim,))

    def call(self, reads, training=None):
        return self.phi(self.projection(_merge_last_two(reads)), training=training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CoAttentionComparison(_LinearPhi):
    """Comparing co-attentions, Eq. 5: c = phi(W_c^T [o^A, o^B]) with W_c in R^{2 d_o x d_c}.

    `call` is the equation as written. Since W_c = [W_c^A; W_c^B] stacks an A half over a B half,
    W_c^T [o^A, o^B] = o^A W_c^A + o^B W_c^B, and the A term depends on image A only: `project_reference`
    computes it once per query image and `compare_projected` finishes Eq. 5 for any number of B images. phi comes
    after the sum, so the split equals `call` exactly in training and in inference.

    Inputs: o_a, o_b [..., L, d_o]. Output: c [..., L, d_c].
    """

    def build(self, o_a_shape, o_b_shape=None):
        if o_b_shape is not None and o_b_shape[-1] != o_a_shape[-1]:
            raise ValueError(f"{self.name}: o^A and o^B must have the same width d_o; got {o_a_shape[-1]} and "
                             f"{o_b_shape[-1]}")
        self.kernel = self.add_weight(shape=(2 * o_a_shape[-1], self.output_dim), initializer=_glorot(self.seed),
                                      name="kernel")
        self.phi.build(tuple(o_a_shape[:-1]) + (self.output_dim,))

    def call(self, o_a, o_b, training=None):
        return self.phi(ops.matmul(ops.concatenate([o_a, o_b], axis=-1), self.kernel), training=training)

    def project_reference(self, o_a):
        """o^A W_c^A: [..., L, d_o] -> [..., L, d_c], the half of Eq. 5 that depends on image A only."""
        return ops.matmul(o_a, self.kernel[: self.kernel.shape[0] // 2])

    def compare_projected(self, projected_a, o_b, training=None):
        """Eq. 5 from `project_reference(o^A)` and o^B; the leading dimensions broadcast."""
        return self.phi(projected_a + ops.matmul(o_b, self.kernel[self.kernel.shape[0] // 2:]), training=training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MatchingScore(keras.layers.Layer):
    """Scoring with dense matching, Eq. 6: f(I^A, I^B) = FFN([c_1, ..., c_L]).

    The FFN is "a simple neural network using two fully connected layers" over the concatenated comparison
    vectors, so its input is L * d_c wide and L (the feature-map size, fixed by the input image size) is fixed
    when the layer is built. The paper gives neither the hidden width nor the hidden activation: here they are
    `hidden_units` (KVM-MN's default 512, equal to d, the width the paper gives every other layer) and ReLU; the
    output unit is linear (a logit: Eq. 7 takes its softmax, the pairwise loss its sigmoid). Both layers have
    biases. Under the set-wise loss alone the output bias gets no gradient, since a softmax ignores a shift
    shared by all M scores; it matters for the pairwise loss (Table 3 row D, "Pair").

    Input: C as [..., L, d_c]. Output: scores [...].
    """

    def __init__(self, hidden_units: int = 512, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(hidden_units) < 1:
            raise ValueError(f"hidden_units={hidden_units} must be >= 1")
        self.hidden_units = int(hidden_units)
        self.seed = seed
        self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", kernel_initializer=_glorot(seed, 0),
                                         name="hidden")
        self.output_layer = keras.layers.Dense(1, kernel_initializer=_glorot(seed, 1), name="output")

    def build(self, input_shape):
        if input_shape[-2] is None or input_shape[-1] is None:
            raise ValueError(f"{self.name}: Eq. 6 concatenates the L comparison vectors, so L and d_c must be known "
                             f"when the layer is built; got shape {input_shape}")
        self.num_locations, self.comparison_dim = int(input_shape[-2]), int(input_shape[-1])
        merged = tuple(input_shape[:-2]) + (self.num_locations * self.comparison_dim,)
        self.hidden.build(merged)
        self.output_layer.build(merged[:-1] + (self.hidden_units,))

    def call(self, comparisons):
        if tuple(comparisons.shape[-2:]) != (self.num_locations, self.comparison_dim):
            raise ValueError(f"{self.name} was built for [..., L={self.num_locations}, d_c={self.comparison_dim}] "
                             f"(the feature map of the configured image size); got {comparisons.shape}")
        return ops.squeeze(self.output_layer(self.hidden(_merge_last_two(comparisons))), axis=-1)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "seed": self.seed}
