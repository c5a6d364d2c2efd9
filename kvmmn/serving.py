"""A trained KVM-MN as a SavedModel with two serving signatures (the library behind `kvmmn-export`).

    embed(images [N, h, w, 3] float32 in [-1, 1])
        -> {keys [N, L, H, d_k], values [N, L, H, d_v], reference_comparison [N, L, d_c], pooled [N, C]}
    score(query_memory, gallery_memory) -> {scores [Q, G]}   (f(query_q, gallery_g) of Eq. 6; higher = more alike)

`score` takes two memories as `embed` returns them. In the serving signature their fields are named
`query_<field>` and `gallery_<field>` (query_keys, query_values, query_reference_comparison, query_pooled,
gallery_keys, ...); the score reads only the query's keys and reference_comparison and the gallery's keys and
values, the other inputs are pruned from the graph. In Python:

    served = tf.saved_model.load(export_dir)
    scores = served.score(served.embed(query_images), served.embed(gallery_images))["scores"]

Images are preprocessed as for training: resized to the model's image size and scaled to TF-slim's [-1, 1]
(`data.pipeline.load_image(path, image_size, "inception")`). `metadata.json` in the export folder records the
model configuration and the image size.

Export folders: `--export_dir` is a folder of kvmmn-export's own (`engine.run_dir.claim`; a user's non-empty
folder, e.g. a dataset, is refused before anything is written) holding one numbered version per export,
`<export_dir>/1`, `<export_dir>/2`, ... (TensorFlow Serving's layout). Each version is written complete to a
temporary folder beside it and renamed into place, and never over an earlier one, so the SavedModel and the
metadata of a version always belong together, even when an export is killed.
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from engine import atomic, run_dir
from kvmmn.model import MEMORY_FIELDS, KVMMN

EXPORT_TOOL = "kvmmn-export"  # the owner named in an export folder's marker


def _memory_specs(model: KVMMN, prefix: str) -> dict:
    return {field: tf.TensorSpec(spec.shape, spec.dtype, name=f"{prefix}_{field}")
            for field, spec in model.memory_signature().items()}


def export_saved_model(model: KVMMN, export_dir: str, gallery_batch_size: int | None = None,
                       extra_metadata: dict | None = None) -> str:
    """Write `model` as a SavedModel with the `embed` and `score` signatures to a new version folder of
    `export_dir` (see the module docstring); returns that folder, e.g. `<export_dir>/1`.

    gallery_batch_size: `score` compares the queries with this many gallery images at a time (bounds memory for
    large galleries; None: all at once).
    Raises engine.run_dir.OwnershipError, before anything is written, when `export_dir` is a file, a non-empty
    folder that kvmmn-export did not create, or another tool's folder.
    """
    run_dir.prepare(export_dir, EXPORT_TOOL)
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    version_dir = os.path.join(export_dir, str(max(versions, default=0) + 1))
    height, width = model.config.image_size

    def embed(images):
        memory = model.embed(images)
        return {field: tf.cast(memory[field], tf.float32) for field in MEMORY_FIELDS}

    def score(query_memory, gallery_memory):
        return {"scores": tf.cast(model.score(query_memory, gallery_memory, gallery_batch_size), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("embed", embed, input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32,
                                                                        name="images")])
    archive.add_endpoint("score", score, input_signature=[_memory_specs(model, "query"),
                                                          _memory_specs(model, "gallery")])
    metadata = {"model": model.config.to_dict(), "image_size": [height, width], "normalization": "inception",
                "signatures": {"embed": ["images"], "score": ["query_memory", "gallery_memory"]},
                "memory_fields": list(MEMORY_FIELDS), **(extra_metadata or {})}
    with atomic.atomic_path(version_dir) as temporary:
        archive.write_out(temporary, verbose=False)
        atomic.write_text(os.path.join(temporary, "metadata.json"), json.dumps(metadata, indent=2))
    return version_dir
