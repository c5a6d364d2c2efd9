"""The trained re-ID baseline (BoT ResNet, `features.head`) as a SavedModel for TensorFlow Serving (the library
behind `acp-baseline-export`).

Signatures:

    embed(images: uint8 [N, H, W, 3] RGB, any size)                 (also `serving_default`)
    embed_encoded(encoded_images: string [N], JPEG or PNG files)
        -> embedding [N, 2048] (the BNNeck feature BoT evaluates with), f3 [N, 512], f4 [N, 1024], f5 [N, 2048]
           (the pooled C3, C4, C5 of ACP's multi-block fusion), float32

the features `acp-extract` writes into a feature file, from images resized and normalised in the graph as
the evaluation pipeline does (`data.serving`: bilinear antialiased resize to the model's image size, ImageNet
mean / std of RGB). Compare embeddings with the cosine distance (FastReID's test metric, `acp-rerank`'s default);
`acp-export`'s `rerank` signature takes them with f3, f4, f5. In Python:

    served = tf.saved_model.load("exported/baseline/1")
    features = served.signatures["embed"](images=tf.constant(uint8_images))   # features["embedding"], ["f3"] ...

Export folders follow TensorFlow Serving's layout, `<export_dir>/<version>/` (`engine.export`); metadata.json holds
the signatures as written, the preprocessing, the model configuration and (acp-baseline-export) the checkpoint
and its run's baseline_config.json as `training_config`.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from data import serving as image_serving
from engine import export
from features.head import ModelConfig, feature_extractor

EXPORT_TOOL = "acp-baseline-export"
NORMALIZATION = "imagenet"  # as acp-baseline-train and acp-extract read images


def build_archive(model: keras.Model, config: ModelConfig) -> keras.export.ExportArchive:
    """The `ExportArchive` with the `embed` and `embed_encoded` signatures of the module docstring."""
    extractor = feature_extractor(model)
    archive = keras.export.ExportArchive()
    archive.track(extractor)

    def embed(images):
        return {name: tf.cast(value, tf.float32) for name, value in extractor(images, training=False).items()}

    image_serving.add_image_endpoints(archive, "embed", embed, config.image_size, NORMALIZATION)
    return archive


def export_saved_model(model: keras.Model, config: ModelConfig, export_dir: str,
                       extra_metadata: dict | None = None) -> str:
    """Write the baseline `model` of `config` (as `features.training.restore_model` returns them) with the
    signatures of the module docstring as a new version folder of `export_dir` (`engine.export.write_version`);
    returns that folder. Raises engine.run_dir.OwnershipError, before anything is written, when `export_dir` is
    not acp-baseline-export's."""
    metadata = {"model": "BoT ResNet baseline", "exporter": EXPORT_TOOL, "model_config": dataclasses.asdict(config),
                "preprocessing": image_serving.preprocessing_metadata(config.image_size, NORMALIZATION),
                "features": {"embedding": "BNNeck output (BoT's test feature)",
                             "f3": "pooled C3", "f4": "pooled C4", "f5": "pooled C5 (before the BNNeck)",
                             "metric": "cosine"},
                **(extra_metadata or {})}
    return export.write_version(build_archive(model, config), export_dir, EXPORT_TOOL, metadata)
