r"""kvmmn-export: write a trained KVM-MN as a SavedModel for TensorFlow Serving (`embed`, `embed_encoded`, `score`).

    kvmmn-export --checkpoint=runs/market --export_dir=exported/kvmmn_market   # -> exported/kvmmn_market/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier kvmmn-export folder. See `kvmmn.serving` for the signatures and how to call them.
"""
from __future__ import annotations

from absl import flags, logging

from engine import cli, run_dir
from kvmmn import serving
from kvmmn.training import load_trained_model

FLAGS = cli.new_flags()
flags.DEFINE_string("checkpoint", None, "Required: a kvmmn-train --train_dir (its latest checkpoint) or a checkpoint "
                    "prefix.", flag_values=FLAGS)
flags.DEFINE_string("export_dir", None, "Required: folder of the exports; each export is a new version folder in it "
                    "(<export_dir>/1, /2, ...).", flag_values=FLAGS)
flags.DEFINE_integer("query_batch_size", serving.DEFAULT_QUERY_BATCH_SIZE,
                     "score() compares this many queries ...", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("gallery_batch_size", serving.DEFAULT_GALLERY_BATCH_SIZE,
                     "... with this many gallery images at a time (bounds its working memory).", lower_bound=1,
                     flag_values=FLAGS)


def main(argv):
    del argv
    checkpoint = cli.require(FLAGS, "checkpoint", "a kvmmn-train --train_dir or checkpoint prefix")
    export_dir = cli.require(FLAGS, "export_dir", "the folder the numbered exports go to")
    run_dir.claim(export_dir, serving.EXPORT_TOOL)  # before loading anything: not into a folder not ours
    model, config, checkpoint, step = load_trained_model(checkpoint)
    version_dir = serving.export_saved_model(
        model, export_dir, FLAGS["query_batch_size"].value, FLAGS["gallery_batch_size"].value,
        extra_metadata={"training_config": config.to_dict(), "checkpoint": checkpoint, "step": step})
    logging.info("exported %s (step %d) to %s", checkpoint, step, version_dir)
    print(version_dir)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
