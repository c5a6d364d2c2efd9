"""Running a KVM-MN model over a list of images once: pooled backbone features (L2 neighbours and shortlists) and
the key-value memories that `KVMMN.score` compares (`KVMMN.embed`).

Memories are large (an image's keys and values are L x H x (d_k + d_v) floats: 98 x 4 x 256 for the paper's
model, about 400 KB), so `embed_memories` can write them to `.npy` files opened as memory maps in `scratch_dir`
instead of RAM; the arrays it returns work the same either way.
"""
from __future__ import annotations

import os
import weakref
from typing import Sequence

import numpy as np
import tensorflow as tf

from data.pipeline import PRESETS, make_dataset
from data.record import Sample
from engine.progress import Progress
from kvmmn.model import MEMORY_FIELDS, KVMMN

NORMALIZATION = PRESETS["kvmmn"][1]

# One compiled function per (model, fields): training re-embeds its training set every few steps.
_FUNCTIONS: "weakref.WeakKeyDictionary[KVMMN, dict]" = weakref.WeakKeyDictionary()


def _compiled(model: KVMMN, fields: tuple[str, ...]):
    functions = _FUNCTIONS.setdefault(model, {})
    if fields not in functions:
        def run(images):
            if fields == ("pooled",):
                return {"pooled": model.pooled_features(images)}
            memory = model.embed(images)
            return {field: tf.cast(memory[field], tf.float32) for field in fields}

        signature = [tf.TensorSpec([None, *model.config.image_size, 3], tf.float32)]
        functions[fields] = tf.function(run, input_signature=signature)
    return functions[fields]


def image_batches(samples: Sequence[Sample], image_size, batch_size: int) -> tf.data.Dataset:
    """Batches of the images of `samples` in order, resized and normalised for KVM-MN (no augmentation)."""
    return make_dataset(samples, image_size=image_size, normalization=NORMALIZATION, batch_size=batch_size)


def _run(model: KVMMN, fields: tuple[str, ...], samples, batch_size, progress: bool, title: str, consume) -> None:
    function = _compiled(model, fields)
    bar = Progress(len(samples), unit="image", enabled=bool(progress))
    if progress:
        print(title)
    done = 0
    for images, _, _ in image_batches(samples, model.config.image_size, batch_size):
        outputs = function(images)
        consume(done, {name: value.numpy() for name, value in outputs.items()})
        done += int(images.shape[0])
        bar.update(done)


def pooled_features(model: KVMMN, samples: Sequence[Sample], batch_size: int = 64,
                    progress: bool = False) -> np.ndarray:
    """[N, C] `model.pooled_features` of the images of `samples` (float32, inference-mode batch norm)."""
    out = np.empty((len(samples), model.backbone.output_shape[-1]), np.float32)

    def consume(start, values):
        out[start:start + len(values["pooled"])] = values["pooled"]

    _run(model, ("pooled",), samples, batch_size, progress, f"pooled features of {len(samples)} images", consume)
    return out


def embed_memories(model: KVMMN, samples: Sequence[Sample], fields: Sequence[str] = MEMORY_FIELDS,
                   batch_size: int = 64, progress: bool = False, scratch_dir: str | None = None,
                   name: str = "memory") -> dict[str, np.ndarray]:
    """The memory fields `fields` of every image of `samples`: {field: array [N, ...]} (see `KVMMN.embed`).

    With `scratch_dir`, each field is a memory-mapped `<scratch_dir>/<name>_<field>.npy` instead of an array in RAM.
    """
    unknown = sorted(set(fields) - set(MEMORY_FIELDS))
    if unknown:
        raise ValueError(f"unknown memory fields {unknown}; a KVM-MN memory has {', '.join(MEMORY_FIELDS)}")
    specs = model.memory_signature()
    out = {}
    for field in fields:
        shape = (len(samples), *specs[field].shape[1:])
        if scratch_dir:
            os.makedirs(scratch_dir, exist_ok=True)
            out[field] = np.lib.format.open_memmap(os.path.join(scratch_dir, f"{name}_{field}.npy"), mode="w+",
                                                   dtype=np.float32, shape=shape)
        else:
            out[field] = np.empty(shape, np.float32)

    def consume(start, values):
        for field, value in values.items():
            out[field][start:start + len(value)] = value

    _run(model, tuple(fields), samples, batch_size, progress, f"key-value memories of {len(samples)} images",
         consume)
    return out
