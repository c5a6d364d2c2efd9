"""The re-ID baseline whose features ACP re-ranks: the strong baseline (BoT) of Luo et al. 2019, which ACP uses
through FastReID (ACP Sec. IV-B1), with the multi-block outputs of ACP Sec. III-B1.

Model (`build_baseline`):
  images (pipeline's ImageNet mean/std normalisation) -> `ImageNetToCaffe` -> ResNet-50 (`features.backbone`, last
  stride 1) -> C3, C4, C5 -> global average pooling -> f3 [512], f4 [1024], f5 [2048]
  f5 -> BNNeck (BatchNormalization without shift, BoT's frozen-bias BN) -> embedding
  embedding -> classifier (Dense without bias) -> logits
Test-time feature: `embedding`, the feature AFTER the BNNeck, as BoT evaluates. Losses: `features.losses`; sampler:
`features.sampler`; recipe: `features.recipe`; training and restore: `features.training`.
"""
from __future__ import annotations

import dataclasses

import keras
from absl import logging

from features.backbone import BN_MOMENTUM, RESNET_BLOCKS, ImageNetToCaffe, get_backbone, load_pretrained

BLOCK_OUTPUTS = ("f3", "f4", "f5")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What determines the baseline's variables and outputs (`features.training` saves it beside the checkpoints)."""

    num_classes: int
    image_size: tuple[int, int] = (256, 128)
    depth: int = 50
    blocks: tuple[int, ...] | None = None  # overrides `depth` (small test networks)
    last_stride: int = 1
    caffe_input: bool = True  # ImageNetToCaffe before the backbone (keras.applications' ResNet weights want it)
    backbone: str = dataclasses.field(default="resnet", metadata={"help": (
        "Backbone by its registered name (features.backbone.register_backbone; built in: resnet, which --depth, "
        "--blocks and --last_stride configure).")})

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        elif self.depth not in RESNET_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {self.depth}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        return self.blocks or RESNET_BLOCKS[self.depth]


def build_baseline(config: ModelConfig, pretrained: str | None = None) -> keras.Model:
    """The strong baseline with multi-block outputs: a dict model {"logits", "embedding", "f3", "f4", "f5"}.

    `pretrained`: a Keras weight file of an ImageNet ResNet (see `features.backbone.read_layer_weights`) loaded into
    the backbone; without it the backbone starts from random weights.
    """
    height, width = config.image_size
    backbone = get_backbone(config.backbone)((height, width, 3), config)
    if pretrained:
        count = load_pretrained(backbone, pretrained)
        logging.info("loaded ImageNet weights of %d layers from %s", count, pretrained)
    images = keras.Input((height, width, 3), name="images")
    x = ImageNetToCaffe(name="caffe_input")(images) if config.caffe_input else images
    blocks = backbone(x)
    pooled = {name: keras.layers.GlobalAveragePooling2D(dtype="float32", name=name)(block)
              for name, block in zip(BLOCK_OUTPUTS, blocks)}
    embedding = keras.layers.BatchNormalization(center=False, momentum=BN_MOMENTUM, dtype="float32",
                                                    name="bnneck")(pooled["f5"])
    logits = keras.layers.Dense(config.num_classes, use_bias=False, dtype="float32",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                                name="classifier")(embedding)
    return keras.Model(images, {"logits": logits, "embedding": embedding, **pooled}, name="reid_baseline")


def feature_extractor(model: keras.Model) -> keras.Model:
    """The baseline without its classifier: images -> {"embedding", "f3", "f4", "f5"} (shares the weights)."""
    outputs = {name: model.get_layer(name).output for name in BLOCK_OUTPUTS}
    return keras.Model(model.input, {"embedding": model.get_layer("bnneck").output, **outputs},
                       name="reid_features")
