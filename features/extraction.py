"""Extraction: the feature file (`features.feature_file` schema) of a trained baseline for a dataset's train, query
and gallery images (the library of `acp-extract`, `features.cli.extract`).

Per image: the BNNeck embedding and the pooled C3/C4/C5 (f3, f4, f5), with pid, camid (`feature_file.NO_LABEL` for
an image without labels: a folder of crops, `data.image_lists`), split and the image's absolute path (a relative
one would name another file, or none, once the feature file is read from another folder). Images are
embedded `chunk_size` at a time into `<output>.parts/`; a killed run started again skips the chunks already on disk;
the chunks are then streamed into the output, so a 100K-image set never has all its features in memory.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from data.pipeline import make_dataset
from engine.progress import Progress
from features import feature_file
from features.head import ModelConfig, feature_extractor


def inference_function(extractor, image_size):
    """The extractor in inference mode as one tf.function for every batch size."""
    signature = [tf.TensorSpec([None, *image_size, 3], tf.float32)]
    return tf.function(lambda images: extractor(images, training=False), input_signature=signature)


def embed(forward, samples, image_size, batch_size: int) -> dict[str, np.ndarray]:
    """{"embedding", "f3", "f4", "f5"} of `samples` computed by `forward` (`inference_function`), in order."""
    batches = [forward(images) for images, _, _ in
               make_dataset(samples, image_size=image_size, normalization="imagenet", batch_size=batch_size)]
    return {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}


def rows_of(record, subsets=tuple(feature_file.SPLIT_CODES)) -> list[tuple]:
    """(Sample, split code) of the record's chosen subsets, train then query then gallery."""
    unknown = sorted(set(subsets) - set(feature_file.SPLIT_CODES))
    if unknown:
        raise ValueError(f"subsets: unknown {unknown}; choose from {list(feature_file.SPLIT_CODES)}")
    return [(sample, code) for name, code in feature_file.SPLIT_CODES.items() if name in subsets
            for sample in getattr(record, name)]


def extract(model, model_config: ModelConfig, record, output: str, *, checkpoint: str = "",
            subsets=tuple(feature_file.SPLIT_CODES), batch_size: int = 64, chunk_size: int = 4096,
            overwrite: bool = False, show_progress: bool = True) -> str:
    """Write the feature file of `record` embedded by the baseline `model`; resumable (see module docstring)."""
    forward = inference_function(feature_extractor(model), model_config.image_size)
    rows = rows_of(record, subsets)
    if not rows:
        raise ValueError(f"dataset {record.name}: no images in {list(subsets)}")
    # counted in images (a step bar said 'step 1/1, 0.00 steps/s' for a file of one chunk); a line per chunk
    progress = Progress(len(rows), unit="images", enabled=show_progress, refresh_seconds=0, log_seconds=0)

    def compute(chunk):
        # An unlabelled sample (pid and camid None) is NO_LABEL in the pipeline's label tensors and in the file.
        samples = [sample if sample.pid is not None else sample._replace(pid=feature_file.NO_LABEL,
                                                                          camid=feature_file.NO_LABEL)
                   for sample, _ in chunk]
        arrays = embed(forward, samples, model_config.image_size, batch_size)
        return feature_file.FeatureSet(**arrays, pid=[s.pid for s in samples], camid=[s.camid for s in samples],
                                       split=[code for _, code in chunk],
                                       path=np.array([os.path.abspath(s.path) for s in samples]))

    plan = {"dataset": record.name, "split": record.split, "checkpoint": os.path.abspath(checkpoint) if checkpoint
            else "", "image_size": list(model_config.image_size)}
    # the record's facts travel with the rows: a re-ranker evaluates the file under its own protocol
    return feature_file.write_chunked(output, rows, compute, chunk_size, plan, overwrite=overwrite,
                                      on_chunk=lambda done, total: progress.update(min(done * chunk_size, len(rows))),
                                      dataset=record.name, dataset_split=record.split or "",
                                      protocol=record.protocol, source=f"acp-extract {checkpoint}".strip())
