"""The Key-Value Memory Matching Network (KVM-MN, Zhang, Li and Zhang, AAAI 2019) as a Keras model.

    image -> backbone (Inception V1 to Mixed_4f) -> 1x1 convolution to d -> (+ position embedding, Eq. 1)
          -> key-value memory (Eq. 2)                                         = embed(image), once per image
    memory(A), memory(B) -> co-attention with A's keys as references (Eq. 3) -> fusion (Eq. 4)
          -> comparison (Eq. 5) -> FFN over the L comparison vectors (Eq. 6)   = f(A, B)

Training (`model((probe, gallery_set))`) scores a probe against its gallery set of M images, for the set-wise
loss of Eq. 7-8 (`kvmmn.losses`). Retrieval embeds every image once (`embed`) and scores queries against
gallery images from the stored memories (`score`), which skips everything that depends on one image only.

Configuration (`KVMMNConfig`); the defaults are Table 1's model: d = 512, H = 4, d_k = d_v = 64, d_o = d_c = d,
224x112 inputs (a 14x7 feature map, L = 98). Table 3's ablations, as model fields (the training-side columns
M, #Step, #Sample, RE and RR, and the loss, belong to the training binary):

    row        | model fields
    -----------|------------------------------------------------------------------------------------------
    Base       | feature_dim=256, num_heads=4, key_dim=64, value_dim=64 (position_embedding=True)
    (A) H=1    | feature_dim=256, num_heads=1, key_dim=256, value_dim=256
    (A) H=2    | feature_dim=256, num_heads=2, key_dim=128, value_dim=128
    (A) H=8    | feature_dim=256, num_heads=8, key_dim=32, value_dim=32
    (A) K = V  | feature_dim=256, num_heads=4, key_dim=64, value_dim=64, shared_key_value=True
    (B) 512    | feature_dim=512, num_heads=4, key_dim=128, value_dim=128
    (B) 1024   | feature_dim=1024, num_heads=4, key_dim=256, value_dim=256
    (C)        | Base with position_embedding=False
    (D) Pair   | Base, trained with `kvmmn.losses.PairwiseMatchingLoss` instead of `SetwiseMatchingLoss`
    (D) M, hard| Base; gallery-set size M, hard/random negatives and #Step are training settings
    (E)        | Base; random erasing / rotation are data-pipeline settings
    (F)        | feature_dim=512, num_heads=4, key_dim=128, value_dim=128 (+ M=15, 250K steps, RE + RR)

Choices the paper leaves open (also in WORKSPACE.md):
- The 1x1 convolution to d is linear with a bias; phi (batch norm + ReLU) comes in the memory (Eq. 2).
- The pooled feature used for the L2 shortlists ("100 nearest neighbours of the probe by L2 distance" for
  negative mining, and any pre-ranking at evaluation) is the global average of the backbone's Mixed_4f map:
  it is meaningful with the ImageNet weights alone, before the 1x1 convolution has been trained.
- Weight decay (the paper's 0.0002) is left to the optimizer: the backbone is built without L2 losses.
- In training, one batch norm per phi sees both sides of every pair (o^A and o^B share W_o and its batch norm).
"""
from __future__ import annotations

import dataclasses
import math

import keras
from keras import ops

from kvmmn.layers import (PACKAGE, CoAttention, CoAttentionComparison, CoAttentionFusion, KeyValueMemory,
                          MatchingScore, PositionEmbedding2D)

BACKBONES = ("inception_v1", "tiny")
BACKBONE_STRIDE = 16
MEMORY_FIELDS = ("keys", "values", "reference_comparison", "pooled")


@dataclasses.dataclass(frozen=True)
class KVMMNConfig:
    """Hyperparameters of `KVMMN` (see the module docstring for Table 3's rows).

    backbone: "inception_v1" (TF-slim's Inception V1 to Mixed_4f, `kvmmn.inception_v1`) or "tiny" (four strided
      3x3 convolutions with the same output stride 16, for tests and quick experiments).
    image_size: (height, width) of the input images; the feature map is ceil(height/16) x ceil(width/16).
    feature_dim: d. num_heads: H. key_dim: d_k. value_dim: d_v. shared_key_value: Table 3 (A) "K = V".
    position_embedding: Eq. 1 on (True) or off (Table 3 row C).
    output_dim: d_o (None: d). comparison_dim: d_c (None: d). score_hidden_units: the hidden width of Eq. 6's FFN.
    backbone_batchnorm: "trainable" or "frozen" batch norm in Inception V1 (see `kvmmn.inception_v1`).
    seed: seeds every weight initialiser (None: Keras's global seed).
    """

    backbone: str = "inception_v1"
    image_size: tuple[int, int] = (224, 112)
    feature_dim: int = 512
    num_heads: int = 4
    key_dim: int = 64
    value_dim: int = 64
    shared_key_value: bool = False
    position_embedding: bool = True
    output_dim: int | None = None
    comparison_dim: int | None = None
    score_hidden_units: int = 512
    backbone_batchnorm: str = "trainable"
    seed: int | None = 0

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.backbone not in BACKBONES:
            raise ValueError(f"KVMMNConfig.backbone={self.backbone!r}: choose one of {', '.join(BACKBONES)}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"KVMMNConfig.image_size={self.image_size} must be (height, width), both >= 1")
        for field in ("feature_dim", "num_heads", "key_dim", "value_dim", "score_hidden_units"):
            if getattr(self, field) < 1:
                raise ValueError(f"KVMMNConfig.{field}={getattr(self, field)} must be >= 1")
        for field in ("output_dim", "comparison_dim"):
            if getattr(self, field) is not None and getattr(self, field) < 1:
                raise ValueError(f"KVMMNConfig.{field}={getattr(self, field)} must be >= 1 or None (= feature_dim)")
        if self.position_embedding and self.feature_dim % 4:
            raise ValueError(f"KVMMNConfig.feature_dim={self.feature_dim} must be a multiple of 4 for the position "
                             f"embedding of Eq. 1 (or set position_embedding=False)")
        if self.shared_key_value and self.key_dim != self.value_dim:
            raise ValueError(f"KVMMNConfig.shared_key_value=True (K = V) needs key_dim == value_dim; got "
                             f"{self.key_dim} and {self.value_dim}")

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(rows, cols) of the feature map: the backbone's output stride is 16 with SAME padding."""
        return tuple(math.ceil(s / BACKBONE_STRIDE) for s in self.image_size)

    @property
    def num_locations(self) -> int:
        """L of Eq. 6."""
        return self.feature_shape[0] * self.feature_shape[1]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, values: dict) -> "KVMMNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown KVMMNConfig field(s) {unknown}; known fields: {', '.join(sorted(known))}")
        return cls(**values)


def _tiny_backbone(image_size: tuple[int, int], seed: int | None) -> keras.Model:
    """Four strided 3x3 ReLU convolutions (output stride 16, like Mixed_4f): a stand-in for fast tests."""
    images = keras.Input(shape=(*image_size, 3), name="images")
    x = images
    for i, filters in enumerate((8, 16, 16, 32)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{i}",
                                kernel_initializer=keras.initializers.HeNormal(None if seed is None else seed + i))(x)
    return keras.Model(images, x, name="tiny_backbone")


def make_backbone(config: KVMMNConfig) -> keras.Model:
    """The feature extractor named by `config.backbone`, for `config.image_size` inputs."""
    if config.backbone == "tiny":
        return _tiny_backbone(config.image_size, config.seed)
    from kvmmn.inception_v1 import InceptionV1

    return InceptionV1(final_endpoint="Mixed_4f", include_top=False, input_shape=(*config.image_size, 3),
                       batchnorm=config.backbone_batchnorm, weight_decay=0.0, seed=config.seed)


@keras.saving.register_keras_serializable(package=PACKAGE)
class KVMMN(keras.Model):
    """KVM-MN: `embed` images into key-value memories, `score` query memories against gallery memories, and
    `model((probe, gallery_set))` -> [B, M] scores for training.

    The memory of an image is a dict of tensors (a SavedModel signature can take and return it):
      keys [N, L, H, d_k] and values [N, L, H, d_v] (Eq. 2);
      reference_comparison [N, L, d_c]: o^A W_c^A, the image's own half of Eq. 5 when it is the query A, where
        o^A = phi(W_o^T [r_1^A..r_H^A]) (Eq. 4) and r_h^A reads A's memory with A's own keys (Eq. 3); none of it
        depends on B, so `score` computes it once per query instead of once per pair;
      pooled [N, C]: the globally averaged backbone feature map, for L2 shortlists.
    `embed`/`score` run batch norm in inference mode. Everything the model computes is exactly Eq. 3-6 per pair;
    `score_pairs` is that per-pair path, and `score` equals it up to float rounding.

    All shapes follow from the config, so the model is built on construction.
    """

    def __init__(self, config: KVMMNConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = KVMMNConfig()
        elif isinstance(config, dict):
            config = KVMMNConfig.from_dict(config)
        self.config = config
        seed = config.seed

        def layer_seed(index: int) -> int | None:
            # Distinct seeds per layer (a layer's kernels take seed, seed + 1), clear of the backbone's seed,
            # seed + 1, ... (one per convolution): equal integer seeds would repeat random streams.
            return None if seed is None else seed + 1000 + 10 * index

        self.backbone = make_backbone(config)
        self.projection = keras.layers.Conv2D(config.feature_dim, 1, name="projection",
                                              kernel_initializer=keras.initializers.GlorotUniform(layer_seed(1)))
        self.position_embedding = PositionEmbedding2D(name="position_embedding") if config.position_embedding else None
        self.memory = KeyValueMemory(config.num_heads, config.key_dim, config.value_dim,
                                     shared_key_value=config.shared_key_value, seed=layer_seed(2), name="memory")
        self.co_attention = CoAttention(name="co_attention")
        self.fusion = CoAttentionFusion(self.output_dim, seed=layer_seed(3), name="fusion")
        self.comparison = CoAttentionComparison(self.comparison_dim, seed=layer_seed(4), name="comparison")
        self.matching_score = MatchingScore(config.score_hidden_units, seed=layer_seed(5), name="matching_score")
        self.build()

    @property
    def output_dim(self) -> int:
        return self.config.output_dim or self.config.feature_dim

    @property
    def comparison_dim(self) -> int:
        return self.config.comparison_dim or self.config.feature_dim

    def build(self, input_shape=None):
        if self.built:  # built on construction; Keras calls build again when a saved model is loaded
            return
        height, width = self.config.image_size
        rows, cols = self.config.feature_shape
        backbone_shape = tuple(self.backbone.compute_output_shape((None, height, width, 3)))
        if backbone_shape[1:3] != (rows, cols):
            raise ValueError(f"backbone {self.config.backbone!r} maps {height}x{width} images to "
                             f"{backbone_shape[1]}x{backbone_shape[2]}, expected {rows}x{cols} (output stride 16)")
        c = self.config
        locations = c.num_locations
        self.projection.build(backbone_shape)
        self.memory.build((None, locations, c.feature_dim))
        self.fusion.build((None, locations, c.num_heads, c.value_dim))
        self.comparison.build((None, locations, self.output_dim), (None, locations, self.output_dim))
        self.matching_score.build((None, locations, self.comparison_dim))

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config=config.pop("config"), **config)

    # --- one image at a time -------------------------------------------------------------------------------

    def _encode(self, images, training):
        """images [N, h, w, 3] -> (backbone map [N, rows, cols, C], keys, values) of Eq. 1-2."""
        height, width = self.config.image_size
        if tuple(images.shape[1:]) != (height, width, 3):
            raise ValueError(f"KVMMN was configured for {height}x{width}x3 images (image_size={self.config.image_size})"
                             f"; got images of shape {tuple(images.shape)}")
        feature_map = self.backbone(images, training=training)
        features = self.projection(feature_map)
        if self.position_embedding is not None:
            features = self.position_embedding(features)
        features = ops.reshape(features, (-1, self.config.num_locations, self.config.feature_dim))
        keys, values = self.memory(features, training=training)
        return feature_map, keys, values

    def embed(self, images, training=False) -> dict:
        """The memory of each image (see the class docstring): {keys, values, reference_comparison, pooled}."""
        images = ops.convert_to_tensor(images, dtype=self.compute_dtype)
        feature_map, keys, values = self._encode(images, training)
        return {"keys": keys, "values": values,
                "reference_comparison": self.reference_comparison(keys, values, training=training),
                "pooled": ops.mean(feature_map, axis=(1, 2))}

    def reference_comparison(self, keys, values, training=False):
        """o^A W_c^A [N, L, d_c] from A's memory: Eq. 3 with A's keys reading A's memory, Eq. 4, half of Eq. 5."""
        reads = self.co_attention(keys, keys, values)
        return self.comparison.project_reference(self.fusion(reads, training=training))

    def pooled_features(self, images, training=False):
        """[N, C]: the global average of the backbone feature map (the L2-shortlist feature), without the memory."""
        images = ops.convert_to_tensor(images, dtype=self.compute_dtype)
        return ops.mean(self.backbone(images, training=training), axis=(1, 2))

    def memory_shapes(self, batch_size: int | None = None) -> dict:
        """The shape of each tensor of a memory dict for `batch_size` images (None: any number)."""
        c, locations = self.config, self.config.num_locations
        return {"keys": (batch_size, locations, c.num_heads, c.key_dim),
                "values": (batch_size, locations, c.num_heads, c.value_dim),
                "reference_comparison": (batch_size, locations, self.comparison_dim),
                "pooled": (batch_size, self.backbone.output_shape[-1])}

    def memory_signature(self, batch_size: int | None = None) -> dict:
        """`tf.TensorSpec`s of a memory dict, for SavedModel signatures of `score` (TensorFlow only)."""
        import tensorflow as tf  # here, not at the top: the model itself runs on every Keras backend

        shapes = self.memory_shapes(batch_size)
        return {name: tf.TensorSpec(shapes[name], tf.float32, name=name) for name in MEMORY_FIELDS}

    # --- pairs -----------------------------------------------------------------------------------------------

    def score_pairs(self, memory_a: dict, memory_b: dict, training=False):
        """f(A_p, B_p) for P pairs given as memories with the same leading P: Eq. 3-6 as written, per pair. [P]."""
        keys_a, values_a = memory_a["keys"], memory_a["values"]
        reads = ops.stack([self.co_attention(keys_a, keys_a, values_a),
                           self.co_attention(keys_a, memory_b["keys"], memory_b["values"])])
        fused = self.fusion(reads, training=training)
        return self.matching_score(self.comparison(fused[0], fused[1], training=training))

    def _score_grid(self, keys_q, reference_q, keys_g, values_g):
        """[Q, G] scores from the cached query terms against G gallery memories, batch norm in inference mode."""
        reads_b = self.co_attention(keys_q[:, None], keys_g[None], values_g[None])  # [Q, G, L, H, d_v]
        fused_b = self.fusion(reads_b, training=False)
        return self.matching_score(self.comparison.compare_projected(reference_q[:, None], fused_b, training=False))

    def score(self, query_memory: dict, gallery_memory: dict, gallery_batch_size: int | None = None):
        """[Q, G] scores f(query_q, gallery_g) of every query memory against every gallery memory.

        Uses the query's cached terms (its keys and `reference_comparison`) and the gallery's keys and values.
        `gallery_batch_size` bounds memory: the gallery is scored in chunks of that many images (Q x chunk pairs
        at a time). On TensorFlow the chunks run inside one `tf.map_fn`, so this also works in a `tf.function` or
        a SavedModel signature whose gallery size is unknown; on JAX and PyTorch, whose shapes are always known
        (also under `jax.jit`), they are a loop over gallery slices.
        """
        keys_q, reference_q = query_memory["keys"], query_memory["reference_comparison"]
        keys_g, values_g = gallery_memory["keys"], gallery_memory["values"]
        if gallery_batch_size is None:
            return self._score_grid(keys_q, reference_q, keys_g, values_g)
        if gallery_batch_size < 1:
            raise ValueError(f"gallery_batch_size={gallery_batch_size} must be >= 1 (or None for one batch)")
        if keras.backend.backend() == "tensorflow":
            return _score_chunks_tf(self._score_grid, keys_q, reference_q, keys_g, values_g, gallery_batch_size)
        return ops.concatenate([self._score_grid(keys_q, reference_q, keys_g[start:start + gallery_batch_size],
                                                 values_g[start:start + gallery_batch_size])
                                for start in range(0, keys_g.shape[0], gallery_batch_size)], axis=1)

    def attention_maps(self, memory_a: dict, memory_b: dict, location, head: int | None = None):
        """Co-attention of A's key at a reference `location` over A's and B's feature maps (Fig. 1 and 3).

        memory_a, memory_b: memories (from `embed`) of N pairs, the same N on both sides.
        location: a location index 0..L-1 or (row, col) in the feature map. head: one head, or None for all.
        Returns numpy (map_a, map_b), each [N, rows, cols] for one head or [N, H, rows, cols] for all; each map
        sums to 1 (the softmax of Eq. 3).
        """
        rows, cols = self.config.feature_shape
        index = location[0] * cols + location[1] if isinstance(location, (tuple, list)) else int(location)
        if not 0 <= index < rows * cols:
            raise ValueError(f"location {location!r} is outside the {rows}x{cols} feature map")
        if head is not None and not 0 <= head < self.config.num_heads:
            raise ValueError(f"head={head} must be in 0..{self.config.num_heads - 1}")
        reference = memory_a["keys"][:, index:index + 1]
        maps = []
        for memory in (memory_a, memory_b):
            _, attention = self.co_attention(reference, memory["keys"], memory["values"],
                                             return_attention_scores=True)  # [N, H, 1, L]
            attention = ops.convert_to_numpy(attention).reshape(-1, self.config.num_heads, rows, cols)
            maps.append(attention if head is None else attention[:, head])
        return tuple(maps)

    # --- training --------------------------------------------------------------------------------------------

    def call(self, inputs, training=None):
        """(probe [B, h, w, 3], gallery_set [B, M, h, w, 3]) -> [B, M] scores f(probe_b, gallery_b,m).

        All B * (M + 1) images go through the backbone in one batch; each pair then takes the per-pair path of
        `score_pairs`, so in training every batch norm sees the whole batch of pairs.
        """
        probe, gallery = inputs
        if len(gallery.shape) != 5:
            raise ValueError(f"KVMMN expects (probe [B, h, w, 3], gallery_set [B, M, h, w, 3]); got gallery_set "
                             f"of shape {tuple(gallery.shape)}")
        batch, set_size = ops.shape(gallery)[0], ops.shape(gallery)[1]
        images = ops.concatenate([probe, ops.reshape(gallery, (-1, *gallery.shape[2:]))], axis=0)
        _, keys, values = self._encode(images, training)
        probe_memory = {"keys": ops.repeat(keys[:batch], set_size, axis=0),
                        "values": ops.repeat(values[:batch], set_size, axis=0)}
        scores = self.score_pairs(probe_memory, {"keys": keys[batch:], "values": values[batch:]}, training=training)
        return ops.reshape(scores, (batch, set_size))


def _score_chunks_tf(score_grid, keys_q, reference_q, keys_g, values_g, gallery_batch_size: int):
    """`KVMMN.score` in gallery chunks on TensorFlow: one `tf.map_fn` over the zero-padded chunks, one at a time
    (`parallel_iterations=1` keeps the memory bound), so the gallery size may be unknown until run time."""
    import tensorflow as tf  # here, not at the top: the TensorFlow backend's path only

    num_gallery = tf.shape(keys_g)[0]
    num_chunks = (num_gallery + gallery_batch_size - 1) // gallery_batch_size
    padding = num_chunks * gallery_batch_size - num_gallery

    def chunked(x):
        x = tf.pad(x, [[0, padding]] + [[0, 0]] * (len(x.shape) - 1))
        return tf.reshape(x, tf.concat([[num_chunks, gallery_batch_size], tf.shape(x)[1:]], axis=0))

    scores = tf.map_fn(lambda chunk: score_grid(keys_q, reference_q, *chunk),
                       (chunked(keys_g), chunked(values_g)), fn_output_signature=keys_q.dtype,
                       parallel_iterations=1)                                  # [chunks, Q, chunk]
    scores = tf.reshape(tf.transpose(scores, [1, 0, 2]), [tf.shape(keys_q)[0], -1])
    return scores[:, :num_gallery]
