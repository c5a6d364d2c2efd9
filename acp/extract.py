r"""acp-extract: the feature file (`acp.features` schema) of a trained baseline for a dataset's train, query and
gallery images.

    acp-extract --checkpoint=runs/baseline_market --dataset=market1501 --data_root=/data/Market-1501-v15.09.15 \
        --output=features/market1501.npz

Per image: the BNNeck embedding and the pooled C3/C4/C5 (f3, f4, f5), with pid, camid, split and path. Images are
embedded --chunk_size at a time into `<output>.parts/`; a killed run started again skips the chunks already on disk;
the chunks are then streamed into --output, so a 100K-image set never has all its features in memory.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import app, flags

from acp import baseline, features
from data import datasets
from data.pipeline import make_dataset
from engine import flags as engine_flags
from engine.progress import ProgressBar

engine_flags.define_dataset_flags()
declare = engine_flags.declare_once
declare(flags.DEFINE_string, "checkpoint", None,
        "Training directory of acp-baseline-train (its latest checkpoint) or one checkpoint prefix (.../ckpt-N).")
declare(flags.DEFINE_string, "output", None, "Feature file to write (.npz).")
declare(flags.DEFINE_list, "subsets", list(features.SPLIT_CODES), "Which of train, query, gallery to extract.")
declare(flags.DEFINE_integer, "batch_size", 64, "Images per forward pass.", lower_bound=1)
declare(flags.DEFINE_integer, "chunk_size", 4096, "Images per resumable chunk.", lower_bound=1)
declare(flags.DEFINE_bool, "overwrite", False, "Discard the chunks of an earlier, different extraction.")
FLAGS = flags.FLAGS


def inference_function(extractor, image_size):
    """The extractor in inference mode as one tf.function for every batch size."""
    signature = [tf.TensorSpec([None, *image_size, 3], tf.float32)]
    return tf.function(lambda images: extractor(images, training=False), input_signature=signature)


def embed(forward, samples, image_size, batch_size: int) -> dict[str, np.ndarray]:
    """{"embedding", "f3", "f4", "f5"} of `samples` computed by `forward` (`inference_function`), in order."""
    batches = [forward(images) for images, _, _ in
               make_dataset(samples, image_size=image_size, normalization="imagenet", batch_size=batch_size)]
    return {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}


def rows_of(record, subsets=tuple(features.SPLIT_CODES)) -> list[tuple]:
    """(Sample, split code) of the record's chosen subsets, train then query then gallery."""
    unknown = sorted(set(subsets) - set(features.SPLIT_CODES))
    if unknown:
        raise ValueError(f"--subsets: unknown {unknown}; choose from {list(features.SPLIT_CODES)}")
    return [(sample, code) for name, code in features.SPLIT_CODES.items() if name in subsets
            for sample in getattr(record, name)]


def extract(model, model_config: baseline.ModelConfig, record, output: str, *, checkpoint: str = "",
            subsets=tuple(features.SPLIT_CODES), batch_size: int = 64, chunk_size: int = 4096,
            overwrite: bool = False, show_progress: bool = True) -> str:
    """Write the feature file of `record` embedded by the baseline `model`; resumable (see module docstring)."""
    forward = inference_function(baseline.feature_extractor(model), model_config.image_size)
    rows = rows_of(record, subsets)
    if not rows:
        raise ValueError(f"dataset {record.name}: no images in {list(subsets)}")
    progress = ProgressBar(-(-len(rows) // chunk_size), enabled=show_progress)

    def compute(chunk):
        samples = [sample for sample, _ in chunk]
        arrays = embed(forward, samples, model_config.image_size, batch_size)
        return features.FeatureSet(**arrays, pid=[s.pid for s in samples], camid=[s.camid for s in samples],
                                   split=[code for _, code in chunk], path=np.array([s.path for s in samples]))

    plan = {"dataset": record.name, "split": record.split, "checkpoint": os.path.abspath(checkpoint) if checkpoint
            else "", "image_size": list(model_config.image_size)}
    return features.write_chunked(output, rows, compute, chunk_size, plan, dataset=record.name,
                                  source=f"acp-extract {checkpoint}".strip(), overwrite=overwrite,
                                  on_chunk=lambda done, total: progress.update(done, force=True))


def main(argv):
    del argv
    if not FLAGS.checkpoint or not FLAGS.output:
        raise app.UsageError("--checkpoint and --output are required")
    model, config, path = baseline.restore_model(FLAGS.checkpoint)
    record = datasets.load(FLAGS.dataset, FLAGS.data_root, split=FLAGS.split or None)
    written = extract(model, config, record, FLAGS.output, checkpoint=path, subsets=FLAGS.subsets,
                      batch_size=FLAGS.batch_size, chunk_size=FLAGS.chunk_size, overwrite=FLAGS.overwrite)
    counts = {name: len(getattr(record, name)) for name in FLAGS.subsets}
    print(f"wrote {written}: {counts} images of {record.name}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
