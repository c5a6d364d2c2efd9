"""features.backbone's registry: a user's backbone registered by name builds the baseline, whose pooled blocks (any
widths) and embedding a feature file holds; names are unique and unknown ones are named."""
import keras
import numpy as np
import pytest

from features import backbone
from features.feature_file import FeatureSet
from features.head import ModelConfig, build_baseline, feature_extractor

WIDTHS = (4, 6, 8)


def tiny(input_shape, config):
    """Three strided convolutions: the last three blocks of a toy backbone, 4, 6 and 8 channels wide."""
    images = keras.Input(input_shape)
    x, blocks = images, []
    for index, width in enumerate(WIDTHS):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name=f"tiny_{index}")(x)
        blocks.append(x)
    return keras.Model(images, blocks, name="tiny")


@pytest.fixture
def registered():
    backbone.register_backbone("tiny_test", tiny)
    yield
    del backbone._BACKBONES["tiny_test"]


def test_a_registered_backbone_builds_the_baseline_and_fills_a_feature_file(registered):
    config = ModelConfig(num_classes=3, image_size=(32, 16), backbone="tiny_test", caffe_input=False)
    model = build_baseline(config)
    assert model.get_layer("tiny").name == "tiny"  # the registered network is the baseline's backbone
    images = np.random.default_rng(0).normal(size=(5, 32, 16, 3)).astype(np.float32)
    out = {name: np.asarray(value) for name, value in feature_extractor(model)(images, training=False).items()}
    assert [out[name].shape[1] for name in ("f3", "f4", "f5")] == list(WIDTHS) and out["embedding"].shape == (5, 8)
    rows = FeatureSet(**out, pid=[1, 1, 2, 2, 3], camid=[0, 1, 0, 1, 0], split=[1, 2, 1, 2, 2])
    assert rows.block_widths == dict(zip(("f3", "f4", "f5"), WIDTHS))
    assert "tiny_test" in backbone.backbone_names() and "resnet" in backbone.backbone_names()


def test_backbone_names_are_unique_and_unknown_names_are_named(registered):
    with pytest.raises(ValueError, match="already registered"):
        backbone.register_backbone("tiny_test", lambda shape, config: None)
    assert backbone.register_backbone("tiny_test", tiny) is tiny  # the same builder again is harmless
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'; registered: \['resnet', 'tiny_test'\]"):
        build_baseline(ModelConfig(num_classes=3, image_size=(32, 16), backbone="vit"))


def test_the_default_backbone_is_resnet():
    model = build_baseline(ModelConfig(num_classes=3, image_size=(64, 32), blocks=(1, 1, 1, 1)))
    assert model.get_layer("resnet").get_layer("conv5_block1_out").output.shape[-1] == 2048
