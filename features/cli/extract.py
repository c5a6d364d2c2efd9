r"""acp-extract: the feature file (`features.feature_file` schema) of a trained baseline for a dataset's train, query
and gallery images.

    acp-extract --checkpoint=runs/baseline_market --dataset=market1501 --data_root=/data/Market-1501-v15.09.15 \
        --output=features/market1501.npz

Per image: the BNNeck embedding and the pooled C3/C4/C5 (f3, f4, f5), with pid, camid, split and path. Images are
embedded --chunk_size at a time into `<output>.parts/`; a killed run started again skips the chunks already on disk;
the chunks are then streamed into --output, so a 100K-image set never has all its features in memory.
"""
from __future__ import annotations

from absl import app, flags

from data import datasets
from engine import flags as engine_flags
from features import feature_file, training
from features.extraction import extract

engine_flags.define_dataset_flags()
declare = engine_flags.declare_once
declare(flags.DEFINE_string, "checkpoint", None,
        "Training directory of acp-baseline-train (its latest checkpoint) or one checkpoint prefix (.../ckpt-N).")
declare(flags.DEFINE_string, "output", None, "Feature file to write (.npz).")
declare(flags.DEFINE_list, "subsets", list(feature_file.SPLIT_CODES), "Which of train, query, gallery to extract.")
declare(flags.DEFINE_integer, "batch_size", 64, "Images per forward pass.", lower_bound=1)
declare(flags.DEFINE_integer, "chunk_size", 4096, "Images per resumable chunk.", lower_bound=1)
declare(flags.DEFINE_bool, "overwrite", False, "Discard the chunks of an earlier, different extraction.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.checkpoint or not FLAGS.output:
        raise app.UsageError("--checkpoint and --output are required")
    model, config, path = training.restore_model(FLAGS.checkpoint)
    record = datasets.load(FLAGS.dataset, FLAGS.data_root, split=FLAGS.split or None)
    written = extract(model, config, record, FLAGS.output, checkpoint=path, subsets=FLAGS.subsets,
                      batch_size=FLAGS.batch_size, chunk_size=FLAGS.chunk_size, overwrite=FLAGS.overwrite)
    counts = {name: len(getattr(record, name)) for name in FLAGS.subsets}
    print(f"wrote {written}: {counts} images of {record.name}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
