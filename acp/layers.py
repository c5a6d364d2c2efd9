"""Keras layers of ACP, the Attention-based Correlation Predictor (Zhou, Wang, Chau, IEEE TMM 2022, Section III-B).

One layer per concept of the paper, in the order data flows through them:

| layer | paper | maps |
|---|---|---|
| `MultiBlockFeatureFusion` | Eq. 2-3, Fig. 4 | f3, f4, f5 `[B, k1, D_j]` -> X `[B, k1, d]` |
| `RankEncoding` | Sec. III-B ("we sort its k1-nearest neighbors into a sequence") | X + PE(rank), no weights |
| `TransformerEncoderLayer` | Eq. 4-7, Fig. 5 | one post-LN encoder layer (also cross-attention) |
| `BaseEncoder` | Section III-B2 | X -> Z `[B, k1, d]`, n stacked encoder layers |
| `MemoryInitialization` | Eq. 8-10, Fig. 6 | Z -> M `[B, N, d]` |
| `MemoryRefinement` | Section III-B4, Fig. 8a | (M, first k2 rows of Z) -> M* `[B, N, d]` |
| `FeatureReconstruction` | Section III-B5, Fig. 8b | (Z, M*) -> Z_rcs `[B, k1, d]` |
| `CorrelationClassifier` | Eq. 11 | Z_rcs -> s `[B, k1]` in (0, 1) |

Masks: every layer that mixes sequence positions takes `mask` `[B, k1]` (True = a real neighbour, False =
padding of a shorter sequence). Padded positions are excluded from every softmax and from batch-norm statistics,
and `CorrelationClassifier` writes 0 there, so padding never changes the outputs at real positions.

Where the paper leaves a detail open, the choice is written in the layer's docstring; `acp.model.build_acp`
explains how the choices reproduce the parameter counts of Table III.
"""
import math

import keras
from keras import ops

PACKAGE = "acp"
LAYER_NORM_EPSILON = 1e-5  # the original Transformer's (and PyTorch's) value; Keras' default is 1e-3
BATCH_NORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras' convention
BATCH_NORM_EPSILON = 1e-5


def _seed(seed, offset):
    """Distinct seeds for the sub-layers of one layer, so that their dropout masks are not identical."""
    return None if seed is None else seed + offset


def _check_heads(dim, num_heads, layer_name):
    if dim % num_heads:
        raise ValueError(f"{layer_name}: feature width {dim} is not divisible by num_heads={num_heads}")
    return dim // num_heads


def _key_mask(mask):
    """[B, S] key mask -> [B, 1, S] attention mask, broadcast over all queries (heads, slots)."""
    return None if mask is None else ops.expand_dims(ops.cast(mask, "bool"), 1)


class _PaddingMaskConsumer(keras.layers.Layer):
    """Base of the layers that take the padding mask as their `mask` argument and return tensors without one.

    Declaring mask support keeps Keras from warning that an explicitly passed mask is dropped; returning no mask
    keeps Keras from attaching a `[B, k1]` mask to outputs of other shapes (the memory is `[B, N, d]`).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        return None


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiBlockFeatureFusion(_PaddingMaskConsumer):
    """Multi-block feature fusion, Eq. 2-3 and Fig. 4.

    Each block feature f_j (the globally average-pooled output of a ResNet stage) is L2-normalised and rescaled
    by a learnable gamma_j (Eq. 2), the blocks are concatenated into x_c, and
    x = BN(Dropout(x_c) W + b) (Eq. 3).

    Choices: Eq. 2 multiplies element-wise by gamma, so (as in ParseNet, the paper's reference [41]) gamma_j is a
    vector with one scale per channel of block j, initialised to `gamma_init`. The gamma_j are held as one weight
    `gamma` = [gamma_1; gamma_2; ...] of width sum D_j applied to the concatenation, which is the same product;
    one weight rather than a list of them also keeps every variable in the checkpoint graph (tf.train.Checkpoint
    does not follow the lists Keras tracks). The same layer with a single block is what the Table VII ablation
    without multi-block fusion uses: the baseline embedding alone, mapped to d.

    Call arguments:
        blocks: list of tensors `[B, k1, D_j]`, one per block.
        mask: optional bool `[B, k1]`; padded positions are zeroed before normalisation (whatever they hold)
            and left out of the batch-norm statistics.
    Returns X `[B, k1, units]`, zero at padded positions.
    """

    def __init__(self, units, dropout=0.0, gamma_init=1.0, epsilon=1e-12, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.gamma_init = gamma_init
        self.epsilon = epsilon
        self.seed = seed

    def build(self, blocks_shape):
        if not isinstance(blocks_shape, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in blocks_shape):
            raise ValueError(f"{self.name}: expected a list of block features [B, k1, D_j], got shape {blocks_shape}")
        concat_shape = tuple(blocks_shape[0][:-1]) + (sum(shape[-1] for shape in blocks_shape),)
        self.gamma = self.add_weight(shape=concat_shape[-1:], initializer=keras.initializers.Constant(self.gamma_init),
                                     name="gamma")
        self.feature_dropout = keras.layers.Dropout(self.dropout, seed=self.seed, name="dropout",
                                                    dtype=self.dtype_policy)
        self.dense = keras.layers.Dense(self.units, name="dense", dtype=self.dtype_policy)
        self.dense.build(concat_shape)
        self.norm = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON,
                                                    name="batch_norm", dtype=self.dtype_policy)
        self.norm.build(concat_shape[:-1] + (self.units,))

    def call(self, blocks, mask=None, training=None):
        mask = None if mask is None else ops.cast(mask, "bool")
        normalised = []
        for block in blocks:
            if mask is not None:
                # Zero padding before anything else: NaN or inf there would otherwise poison the gradients of
                # the real positions through the masked branches below.
                block = ops.where(ops.expand_dims(mask, -1), block, ops.zeros_like(block))
            # In float32 even under mixed precision: epsilon and the squared norms of wide blocks under- or
            # overflow float16.
            block = ops.cast(block, "float32")
            inverse_norm = ops.rsqrt(ops.maximum(ops.sum(ops.square(block), axis=-1, keepdims=True), self.epsilon))
            normalised.append(ops.cast(block * inverse_norm, self.compute_dtype))
        scaled = ops.concatenate(normalised, axis=-1) * self.gamma
        fused = self.dense(self.feature_dropout(scaled, training=training))
        if mask is None:
            return self.norm(fused, training=training)
        # Zeroing the padded rows also drops the mask that batch norm attaches to its output, which Keras would
        # otherwise hand on implicitly to later attention layers.
        fused = self.norm(fused, training=training, mask=mask)
        return ops.where(ops.expand_dims(mask, -1), fused, ops.zeros_like(fused))

    def compute_output_shape(self, blocks_shape):
        return tuple(blocks_shape[0][:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout,
                "gamma_init": self.gamma_init, "epsilon": self.epsilon, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RankEncoding(_PaddingMaskConsumer):
    """The original Transformer's sinusoidal position encoding, added to X: row i (rank i in the probe's sorted
    neighbour list, the probe at 0) gets PE(i, 2j) = sin(i / 10000^(2j/d)), PE(i, 2j+1) = cos(i / 10000^(2j/d)).

    Reading (ours; the paper names no position encoding, WORKSPACE.md lists it): Sec. III-B "sorts the k1-nearest
    neighbors into a sequence" for a Transformer encoder "following the original structure", whose inputs carry
    this encoding. Without it every attention layer is blind to the order, so nothing but the memory query (z_1,
    Eq. 9) tells the network which row is the probe whose matches it must find: on clustered embeddings ACP then
    stays at a constant output for hundreds of steps (the probe row included, whose label is always 1) and
    generalises poorly to unseen identities; with it, it learns in a few hundred steps (tests/test_acp_learning.py).
    The encoding has no weights, so Table III's parameter counts are unchanged, and it serves any k1.

    Call arguments:
        inputs: X `[B, k1, d]`.
        mask: optional bool `[B, k1]`; padded positions are passed through unchanged (zero after the fusion).
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, inputs, mask=None):
        dim = inputs.shape[-1]
        positions = ops.cast(ops.arange(ops.shape(inputs)[1]), "float32")
        # channel c uses the frequency of its pair c // 2: sin on even channels, cos on odd ones
        pair = ops.cast(ops.arange(dim) // 2, "float32")
        angles = ops.expand_dims(positions, -1) / ops.power(self.max_wavelength, 2.0 * pair / dim)
        encoding = ops.where(ops.arange(dim) % 2 == 0, ops.sin(angles), ops.cos(angles))
        encoded = inputs + ops.cast(ops.expand_dims(encoding, 0), inputs.dtype)
        if mask is None:
            return encoded
        return ops.where(ops.expand_dims(ops.cast(mask, "bool"), -1), encoded, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerEncoderLayer(_PaddingMaskConsumer):
    """One post-layer-norm Transformer encoder layer, Eq. 4-7 and Fig. 5.

    Y = LN(X + MHA(X W^Q, X W^K, X W^V)) (Eq. 4-5), FFN(Y) = ReLU(Y W1 + b1) W2 + b2 (Eq. 6),
    Z = LN(Y + FFN(Y)) (Eq. 7), with h heads of width d / h.

    With `context` given, the queries come from `inputs` and the keys and values from `context`: the same block
    as cross-attention, which is how `MemoryRefinement` uses it.

    Choices: the FFN's hidden width is not given in the paper; `ffn_dim` (4d in `acp.model`, the original
    Transformer's ratio) is what reproduces Table III's parameter counts. Dropout on the attention weights and on
    both residual branches follows the original Transformer ("following the original structure").

    Call arguments:
        inputs: `[B, T, d]` queries (and keys/values when `context` is None).
        context: optional `[B, S, d]` keys/values.
        mask: optional bool `[B, S]`; False keys get no attention weight.
    """

    def __init__(self, num_heads, ffn_dim, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.seed = seed

    def build(self, inputs_shape, context_shape=None):
        context_shape = inputs_shape if context_shape is None else context_shape
        dim = inputs_shape[-1]
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, _check_heads(dim, self.num_heads, self.name), dropout=self.dropout,
            seed=_seed(self.seed, 0), name="attention", dtype=self.dtype_policy)
        self.attention.build(inputs_shape, context_shape)
        self.attention_dropout = keras.layers.Dropout(self.dropout, seed=_seed(self.seed, 1),
                                                      name="attention_dropout", dtype=self.dtype_policy)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="attention_norm",
                                                              dtype=self.dtype_policy)
        self.attention_norm.build(inputs_shape)
        self.ffn_hidden = keras.layers.Dense(self.ffn_dim, activation="relu", name="ffn_hidden",
                                             dtype=self.dtype_policy)
        self.ffn_hidden.build(inputs_shape)
        self.ffn_output = keras.layers.Dense(dim, name="ffn_output", dtype=self.dtype_policy)
        self.ffn_output.build(tuple(inputs_shape[:-1]) + (self.ffn_dim,))
        self.ffn_dropout = keras.layers.Dropout(self.dropout, seed=_seed(self.seed, 2), name="ffn_dropout",
                                                dtype=self.dtype_policy)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="ffn_norm",
                                                        dtype=self.dtype_policy)
        self.ffn_norm.build(inputs_shape)

    def call(self, inputs, context=None, mask=None, training=None):
        context = inputs if context is None else context
        attended = self.attention(inputs, context, attention_mask=_key_mask(mask), training=training)
        y = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        transformed = self.ffn_output(self.ffn_hidden(y))
        return self.ffn_norm(y + self.ffn_dropout(transformed, training=training))

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BaseEncoder(_PaddingMaskConsumer):
    """BaseEncoder, Section III-B2: n stacked `TransformerEncoderLayer`s (Eq. 4-7) with h heads over the k1-long
    neighbour sequence X, giving Z.

    Call arguments:
        inputs: `[B, k1, d]`.
        mask: optional bool `[B, k1]`; padded neighbours are never attended to.
    """

    def __init__(self, num_layers, num_heads, ffn_dim, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.seed = seed

    def build(self, input_shape):
        for i in range(self.num_layers):
            layer = TransformerEncoderLayer(self.num_heads, self.ffn_dim, self.dropout, seed=_seed(self.seed, 10 * i),
                                            name=f"layer_{i}", dtype=self.dtype_policy)
            layer.build(input_shape)
            # One attribute per layer, not a list: Keras would track a list's layers for `weights`, but
            # tf.train.Checkpoint does not follow it, so their variables would be neither saved nor restored.
            setattr(self, f"layer_{i}", layer)

    @property
    def encoder_layers(self):
        """The n encoder layers, bottom first."""
        return tuple(getattr(self, f"layer_{i}") for i in range(self.num_layers))

    def call(self, inputs, mask=None, training=None):
        x = inputs
        for layer in self.encoder_layers:
            x = layer(x, mask=mask, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemoryInitialization(_PaddingMaskConsumer):
    """Contextual Memory initialisation, Eq. 8-10 and Fig. 6.

    For each of N slots i, with its own W^q_i, W^k_i, W^v_i in R^{d x d_m} (Eq. 8):
    M'_i = softmax(z_1 W^q_i (Z W^k_i)^T / mu_i) Z W^v_i (Eq. 9), only the probe z_1 forming the query;
    M_i = ReLU(BN(M'_i W_i + b_i)) (Eq. 10), the fully connected layer expanding d_m back to d.

    Choices: Eq. 8 has no biases, so the projections have none. "The memory cell comprises N independent memory
    slots", so mu, the fully connected layer and the batch norm are per slot as well (the batch norm normalises
    each (slot, channel) pair over the batch). mu is initialised to sqrt(d_m), the usual attention temperature.

    Call arguments:
        inputs: Z `[B, k1, d]`; position 0 is the probe.
        mask: optional bool `[B, k1]`; padded neighbours get no attention weight.
    Returns M `[B, N, d]`.
    """

    def __init__(self, num_slots, slot_dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.seed = seed

    def _slot_kernel(self, shape, name, offset):
        # Glorot-uniform for each slot's own [fan_in, fan_out] matrix: Keras counts the leading slot axis as a
        # receptive field and divides the variance by it, which scale=num_slots undoes.
        initializer = keras.initializers.VarianceScaling(
            scale=float(self.num_slots), mode="fan_avg", distribution="uniform", seed=_seed(self.seed, offset))
        return self.add_weight(shape=(self.num_slots,) + shape, initializer=initializer, name=name)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.query_kernel = self._slot_kernel((dim, self.slot_dim), "query_kernel", 0)
        self.key_kernel = self._slot_kernel((dim, self.slot_dim), "key_kernel", 1)
        self.value_kernel = self._slot_kernel((dim, self.slot_dim), "value_kernel", 2)
        self.temperature = self.add_weight(
            shape=(self.num_slots,), initializer=keras.initializers.Constant(math.sqrt(self.slot_dim)),
            name="temperature")
        self.output_kernel = self._slot_kernel((self.slot_dim, dim), "output_kernel", 3)
        self.output_bias = self.add_weight(shape=(self.num_slots, dim), initializer="zeros", name="output_bias")
        self.softmax = keras.layers.Softmax(axis=-1, name="softmax", dtype=self.dtype_policy)
        self.norm = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON,
                                                    name="batch_norm", dtype=self.dtype_policy)
        self.norm.build((input_shape[0], self.num_slots * dim))

    def call(self, inputs, mask=None, training=None):
        dim = ops.shape(inputs)[-1]
        query = ops.einsum("bd,ndm->bnm", inputs[:, 0], self.query_kernel)
        keys = ops.einsum("btd,ndm->bntm", inputs, self.key_kernel)
        values = ops.einsum("btd,ndm->bntm", inputs, self.value_kernel)
        logits = ops.einsum("bnm,bntm->bnt", query, keys) / ops.expand_dims(self.temperature, -1)
        weights = self.softmax(logits, mask=_key_mask(mask))
        slots = ops.einsum("bnt,bntm->bnm", weights, values)
        slots = ops.einsum("bnm,nmd->bnd", slots, self.output_kernel) + self.output_bias
        normalised = self.norm(ops.reshape(slots, (-1, self.num_slots * dim)), training=training)
        return ops.relu(ops.reshape(normalised, (-1, self.num_slots, dim)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_slots, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_slots": self.num_slots, "slot_dim": self.slot_dim, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemoryRefinement(_PaddingMaskConsumer):
    """Memory refinement, Section III-B4 and Fig. 8a.

    The memory slots are the queries, the refinement sequence R = {z_i}, i <= k2 (the first k2 rows of Z) the
    keys and values; the softmax runs over the k2 rows of R, so each slot refines itself with what it finds in the
    probe's most confident neighbours.

    Choices: the paper gives no equation. A Transformer block of cross-attention followed by an FFN (each with
    residual and layer norm, `TransformerEncoderLayer` with a context) is the reading under which Table III's
    parameter counts come out (see `acp.model.build_acp`); the residual matches "each memory slot refines itself".

    Call arguments:
        memory: M `[B, N, d]`.
        sequence: Z `[B, k1, d]`.
        k2: int `[B]`, the refinement length of each sequence, clipped to [1, k1]; sequences of one batch may
            differ. R is the first k2 rows by the attention mask, not by slicing Z: a slice to the longest k2 would
            give a shape that depends on the data, which `jax.jit` cannot compile (the masked rows cost k1 - k2
            more keys, a few percent of ACP's work, and change nothing: their attention weights are exactly 0).
        mask: optional bool `[B, k1]`; padded rows are left out of R even when k2 reaches them.
    Returns M* `[B, N, d]`.
    """

    def __init__(self, num_heads, ffn_dim, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.seed = seed

    def build(self, memory_shape, sequence_shape, k2_shape):
        self.block = TransformerEncoderLayer(self.num_heads, self.ffn_dim, self.dropout, seed=self.seed,
                                             name="cross_attention_block", dtype=self.dtype_policy)
        self.block.build(memory_shape, sequence_shape)

    def call(self, memory, sequence, k2, mask=None, training=None):
        length = ops.shape(sequence)[1]
        k2 = ops.clip(ops.cast(ops.reshape(k2, (-1,)), "int32"), 1, length)
        keep = ops.expand_dims(ops.arange(length, dtype="int32"), 0) < ops.expand_dims(k2, 1)
        if mask is not None:
            keep = ops.logical_and(keep, ops.cast(mask, "bool"))
        return self.block(memory, sequence, mask=keep, training=training)

    def compute_output_shape(self, memory_shape, sequence_shape, k2_shape):
        return memory_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureReconstruction(keras.layers.Layer):
    """Feature reconstruction, Section III-B5 and Fig. 8b.

    Multi-head attention with Z as the queries and the refined memory M* as keys and values: each neighbour is
    rebuilt as a combination of memory slots, Z_rcs = MHA(Z W^Q, M* W^K, M* W^V). Unlike an encoder layer there is
    no residual (and hence no layer norm): the attention output itself is the reconstruction.

    Call arguments:
        sequence: Z `[B, k1, d]`.
        memory: M* `[B, N, d]`.
    Returns Z_rcs `[B, k1, d]` (rows of padded positions are meaningless; the classifier zeroes their output).
    """

    def __init__(self, num_heads, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = dropout
        self.seed = seed

    def build(self, sequence_shape, memory_shape):
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, _check_heads(sequence_shape[-1], self.num_heads, self.name), dropout=self.dropout,
            seed=self.seed, name="attention", dtype=self.dtype_policy)
        self.attention.build(sequence_shape, memory_shape)

    def call(self, sequence, memory, training=None):
        return self.attention(sequence, memory, training=training)

    def compute_output_shape(self, sequence_shape, memory_shape):
        return sequence_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CorrelationClassifier(_PaddingMaskConsumer):
    """Binary correlation classifier, Eq. 11: s = Sigmoid(Z_rcs W_c + b_c), R^{k1 x d} -> R^{k1}.

    Call arguments:
        inputs: `[B, k1, d]`.
        mask: optional bool `[B, k1]`; padded positions get s = 0.
    Returns s `[B, k1]`, the predicted probability that each neighbour shows the probe's identity.
    """

    def build(self, input_shape):
        self.dense = keras.layers.Dense(1, name="dense", dtype=self.dtype_policy)
        self.dense.build(input_shape)

    def call(self, inputs, mask=None):
        scores = ops.sigmoid(ops.squeeze(self.dense(inputs), -1))
        if mask is not None:
            scores = ops.where(ops.cast(mask, "bool"), scores, ops.zeros_like(scores))
        return scores

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])
