"""The ACP model: configuration (Table II presets, Table VII-X switches), `build_acp`, and the predict API.

A built model maps a batch of neighbour sequences to correlations s `[B, k1]` (Eq. 11), the weights of the
feature expansion p* = sum_j s_j f_j (Eq. 1). Its inputs, a dict of tensors:

| name | shape, dtype | present when |
|---|---|---|
| `f3`, `f4`, `f5` | `[B, k1, 512 / 1024 / 2048]` float32 (`block_dims`) | multi-block fusion on |
| `embedding` | `[B, k1, embedding_dim]` float32 | multi-block fusion off |
| `mask` | `[B, k1]` bool, True = real neighbour | always |
| `k2` | `[B]` int32, refinement length per sequence | memory refinement on |

Row 0 of every sequence is the probe itself (its nearest neighbour). k1 is free (a `None` dimension) and k2 is an
input tensor rather than a Python argument, so one model (and its SavedModel export, whose signature has the same
inputs) serves any k1 and k2, and sequences of one batch may have different k2 and different lengths (shorter ones
padded, `mask` False there; padding never changes the outputs at real positions, and s = 0 at padded positions).
`make_inputs` fills `mask` and broadcasts a scalar `k2`; `predict_correlations` runs a whole array of sequences.
Inside a `tf.function`: `model(make_inputs(model, features, k2, mask), training=False)`.
"""
import dataclasses
import itertools
import typing

import keras
import numpy as np
from keras import ops

from acp import layers

BLOCK_NAMES = ("f3", "f4", "f5")
EMBEDDING_NAME = "embedding"
MASK_NAME = "mask"
K2_NAME = "k2"


@dataclasses.dataclass(frozen=True)
class ACPConfig:
    """Hyper-parameters of ACP. Defaults are ACP-Basic (Table II); `PRESETS` holds Basic and XL.

    Table II: `num_layers` n, `memory_size` N, `num_heads` h, `memory_dim` d_m, `focal_gamma` gamma (Eq. 13, used by
    `acp.losses.CorrelationFocalLoss`, not by the network), `model_dim` d, `fusion_dropout` p_d.
    Table VII switches: `use_fusion` (off: the baseline `embedding` of width `embedding_dim` is the only input),
    `use_encoder` (off: X goes straight to the memory), `use_memory` (off: the BaseEncoder output goes straight
    to the classifier, as the paper states), `use_refinement` (a sub-module of the memory, so it needs it).
    Table VIII-X vary `num_layers`, `num_heads` and `memory_size`.
    Ours: `ffn_multiplier` (FFN width = ffn_multiplier * d, see `build_acp`), `transformer_dropout` (attention and
    residual dropout inside the attention blocks, the original Transformer's 0.1), `position_encoding` (the
    original Transformer's sinusoidal encoding of each row's rank added to X, `acp.layers.RankEncoding`; False
    gives the order-blind reading, which learns far more slowly), `block_dims` (widths of f3, f4, f5; ResNet-50's
    by default), `seed` (dropout seeds; weights follow `keras.utils.set_random_seed`).
    """

    num_layers: int = 3
    memory_size: int = 8
    num_heads: int = 16
    memory_dim: int = 32
    focal_gamma: float = 2.0
    model_dim: int = 256
    fusion_dropout: float = 0.4
    ffn_multiplier: int = 4
    transformer_dropout: float = 0.1
    block_dims: typing.Tuple[int, int, int] = (512, 1024, 2048)
    embedding_dim: int = 2048
    use_fusion: bool = True
    use_encoder: bool = True
    use_memory: bool = True
    use_refinement: bool = True
    position_encoding: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("num_layers", "memory_size", "num_heads", "memory_dim", "model_dim", "ffn_multiplier",
                     "embedding_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ACPConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if len(self.block_dims) != len(BLOCK_NAMES) or any(int(v) < 1 for v in self.block_dims):
            raise ValueError(f"ACPConfig.block_dims must be {len(BLOCK_NAMES)} positive widths (f3, f4, f5), "
                             f"got {self.block_dims!r}")
        for name in ("fusion_dropout", "transformer_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ACPConfig.{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.focal_gamma < 0:
            raise ValueError(f"ACPConfig.focal_gamma must be >= 0, got {self.focal_gamma!r}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"ACPConfig.model_dim={self.model_dim} is not divisible by num_heads={self.num_heads}")
        if self.use_refinement and not self.use_memory:
            raise ValueError("ACPConfig.use_refinement=True needs use_memory=True: memory refinement is a "
                             "sub-module of the Contextual Memory (Table VII); set use_refinement=False too")

    @property
    def ffn_dim(self):
        return self.ffn_multiplier * self.model_dim

    @property
    def feature_names(self):
        """Names of the feature inputs: f3, f4, f5 with multi-block fusion, else the baseline embedding."""
        return BLOCK_NAMES if self.use_fusion else (EMBEDDING_NAME,)

    @property
    def feature_dims(self):
        return tuple(self.block_dims) if self.use_fusion else (self.embedding_dim,)

    def replace(self, **overrides):
        """A copy with some fields changed; an unknown name is a ValueError that lists the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ACPConfig field(s) {unknown}; known: {sorted(known)}")
        if "block_dims" in overrides:
            overrides["block_dims"] = tuple(overrides["block_dims"])
        return dataclasses.replace(self, **overrides)


PRESETS = {
    "basic": ACPConfig(),
    "xl": ACPConfig(num_layers=3, memory_size=8, num_heads=16, memory_dim=128, focal_gamma=1.0, model_dim=1024,
                    fusion_dropout=0.0),
}

# Table VII's experiments (switches recovered from the text of Section IV-D1: Exp-B/C differ in the memory,
# Exp-C/G in refinement, Exp-E/G in fusion, Exp-F/G in the BaseEncoder, Exp-D/E in the BaseEncoder without fusion).
TABLE_VII = {
    "A": dict(use_fusion=False, use_encoder=True, use_memory=False, use_refinement=False),
    "B": dict(use_fusion=True, use_encoder=True, use_memory=False, use_refinement=False),
    "C": dict(use_fusion=True, use_encoder=True, use_memory=True, use_refinement=False),
    "D": dict(use_fusion=False, use_encoder=False, use_memory=True, use_refinement=True),
    "E": dict(use_fusion=False, use_encoder=True, use_memory=True, use_refinement=True),
    "F": dict(use_fusion=True, use_encoder=False, use_memory=True, use_refinement=True),
    "G": dict(use_fusion=True, use_encoder=True, use_memory=True, use_refinement=True),
}


def make_config(preset="basic", **overrides):
    """`PRESETS[preset]` with `overrides` applied (ValueError naming an unknown preset or field)."""
    if isinstance(preset, ACPConfig):
        return preset.replace(**overrides)
    if preset not in PRESETS:
        raise ValueError(f"unknown ACP preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset].replace(**overrides)


def _parse_field(field, text):
    if field.type in (bool, "bool"):
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError(f"{field.name}={text!r}: expected true or false")
        return lowered in ("true", "1")
    if field.name == "block_dims":
        return tuple(int(v) for v in text.split(":"))
    return {int: int, "int": int, float: float, "float": float}[field.type](text)


def parse_overrides(strings):
    """Parses `["num_layers=2", "use_memory=false", "block_dims=64:128:256"]` into typed `ACPConfig` overrides,
    the form the binaries' `--override` flags take. Errors name the offending item."""
    fields = {f.name: f for f in dataclasses.fields(ACPConfig)}
    overrides = {}
    for item in strings:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise ValueError(f"override {item!r}: expected NAME=VALUE with NAME one of {sorted(fields)}")
        try:
            overrides[name] = _parse_field(fields[name], value)
        except ValueError as error:
            raise ValueError(f"override {item!r}: {error}") from None
    return overrides


def build_acp(preset="basic", **overrides):
    """Builds the ACP network of Section III-B as a functional `keras.Model` (inputs: see the module docstring;
    output: correlations s `[B, k1]`).

    Args:
        preset: "basic" or "xl" (Table II), or an `ACPConfig`.
        **overrides: `ACPConfig` fields, e.g. `use_memory=False, use_refinement=False` (Table VII Exp-B, also in
            `TABLE_VII`), `num_layers=2` (Table VIII), `num_heads=8` (IX), `memory_size=4` (X).

    Parameters (Table III: 4.61M Basic, 62.48M XL). With dc = 512 + 1024 + 2048 = 3584 and an attention block
    MHA(d) = 4 d^2 + 4 d (W^Q, W^K, W^V, W^O and biases):
        fusion          dc (gamma per channel) + dc d + d (FC) + 2d (BN)
        BaseEncoder     n [MHA(d) + 8 d^2 + 5 d (FFN of width 4d) + 4 d (two LN)]
        memory init     N [3 d d_m (W^q, W^k, W^v; Eq. 8 has no bias) + 1 (mu) + d_m d + d (FC) + 2 d (BN)]
        refinement      one encoder-style block: MHA(d) + FFN(4d) + two LN
        reconstruction  MHA(d)
        classifier      d + 1
    Basic (d=256, d_m=32): 921,856 + 2,369,280 + 268,296 + 789,760 + 263,168 + 257 = 4,612,617 trainable
    (4.613M, Table III 4.61M); XL (d=1024, d_m=128): 3,676,672 + 37,788,672 + 4,218,888 + 12,596,224
    + 4,198,400 + 1,025 = 62,479,881 trainable (62.480M, Table III 62.48M). Keras' `count_params()` adds the
    batch-norm moving statistics (2d + 2Nd: 4,608 Basic, 18,432 XL) that PyTorch-style counts leave out.
    The other readings miss: without the refinement's FFN, 4.09M / 54.09M; FFNs of width 8d, 6.71M / 96.05M.
    `acp.params.count_params` does this count for any configuration, `acp.params.count_maccs` the MACCs:
    with k2 = 6, Basic 0.097G / 0.188G at k1 = 25 / 50 (Table III 0.10G / 0.19G), XL 1.260G / 2.412G
    (1.26G / 2.40G); the BaseEncoder is 62% (Basic) and 75% (XL) of them.
    """
    config = make_config(preset, **overrides)
    inputs = {name: keras.Input((None, dim), name=name) for name, dim in zip(config.feature_names,
                                                                             config.feature_dims)}
    mask = inputs[MASK_NAME] = keras.Input((None,), dtype="bool", name=MASK_NAME)
    if config.use_refinement:
        inputs[K2_NAME] = keras.Input((), dtype="int32", name=K2_NAME)

    # Far-apart dropout seeds per module; the modules offset them further per sub-layer.
    seeds = itertools.count(config.seed, 1000)
    fusion = layers.MultiBlockFeatureFusion(
        config.model_dim, dropout=config.fusion_dropout, seed=next(seeds),
        name="multi_block_fusion" if config.use_fusion else "embedding_projection")
    z = fusion([inputs[name] for name in config.feature_names], mask=mask)
    if config.position_encoding:
        z = layers.RankEncoding(name="rank_encoding")(z, mask=mask)
    if config.use_encoder:
        z = layers.BaseEncoder(config.num_layers, config.num_heads, config.ffn_dim, config.transformer_dropout,
                               seed=next(seeds), name="base_encoder")(z, mask=mask)
    if config.use_memory:
        memory = layers.MemoryInitialization(config.memory_size, config.memory_dim, seed=next(seeds),
                                             name="memory_initialization")(z, mask=mask)
        if config.use_refinement:
            memory = layers.MemoryRefinement(config.num_heads, config.ffn_dim, config.transformer_dropout,
                                             seed=next(seeds), name="memory_refinement")(
                memory, z, inputs[K2_NAME], mask=mask)
        z = layers.FeatureReconstruction(config.num_heads, config.transformer_dropout, seed=next(seeds),
                                         name="feature_reconstruction")(z, memory)
    # float32 output under mixed precision, as Keras recommends for the last activation.
    correlations = layers.CorrelationClassifier(dtype="float32", name="correlation_classifier")(z, mask=mask)
    return keras.Model(inputs, correlations, name="acp")


def input_names(model):
    """Names of a built (or loaded) ACP model's inputs."""
    return tuple(tensor.name for tensor in model.inputs)


def make_inputs(model, features, k2=None, mask=None):
    """The input dict of `model` for a batch of neighbour sequences; works on NumPy arrays and inside tf.function.

    Args:
        features: mapping holding (at least) the model's feature inputs, `f3`/`f4`/`f5` or `embedding`, each
            `[B, k1, D]` (e.g. the arrays of an `features.feature_file.FeatureSet` gathered by kNN indices).
        k2: int or `[B]` ints; required when the model has memory refinement (Table VII switch on).
        mask: optional bool `[B, k1]`; all True when omitted.
    """
    names = input_names(model)
    missing = [name for name in names if name not in (MASK_NAME, K2_NAME) and name not in features]
    if missing:
        raise ValueError(f"features lack {missing}; this ACP model takes {list(names)}")
    batch = {name: ops.convert_to_tensor(features[name], "float32")
             for name in names if name not in (MASK_NAME, K2_NAME)}
    first = next(iter(batch.values()))
    batch_size, length = ops.shape(first)[0], ops.shape(first)[1]
    batch[MASK_NAME] = (ops.ones((batch_size, length), "bool") if mask is None
                        else ops.cast(ops.convert_to_tensor(mask), "bool"))
    if K2_NAME in names:
        if k2 is None:
            raise ValueError("this ACP model has memory refinement: pass k2 (int or [B] ints)")
        k2 = ops.cast(ops.convert_to_tensor(k2), "int32")
        batch[K2_NAME] = ops.broadcast_to(k2, (batch_size,)) if len(k2.shape) == 0 else k2
    return batch


def predict_correlations(model, features, k2=None, mask=None, batch_size=1024):
    """Correlations s `[num_sequences, k1]` (NumPy float32) for arrays of neighbour sequences, `batch_size`
    sequences at a time, in inference mode. Arguments as in `make_inputs`; features of one call share k1."""
    batch = make_inputs(model, features, k2, mask)
    return np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float32)
