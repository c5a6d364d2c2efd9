r"""kvmmn-export: write a trained KVM-MN as a SavedModel for TensorFlow Serving (`embed`, `embed_encoded`, `score`).

    kvmmn-export --checkpoint=runs/market --export_dir=exported/kvmmn_market   # -> exported/kvmmn_market/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier kvmmn-export folder. See `kvmmn.serving` for the signatures and how to call them.
"""
from __future__ import annotations

from absl import flags

from engine import cli, export
from kvmmn import serving
from kvmmn.training import load_trained_model

FLAGS = cli.new_flags()
export.define_flags(FLAGS, "kvmmn-train")
flags.DEFINE_integer("query_batch_size", serving.DEFAULT_QUERY_BATCH_SIZE,
                     "score() compares this many queries ...", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("gallery_batch_size", serving.DEFAULT_GALLERY_BATCH_SIZE,
                     "... with this many gallery images at a time (bounds its working memory).", lower_bound=1,
                     flag_values=FLAGS)


def restore(checkpoint: str):
    """(model, metadata entries) of a kvmmn-train checkpoint."""
    model, config, path, step = load_trained_model(checkpoint)
    return model, {"training_config": config.to_dict(), "checkpoint": path, "step": step}


def write(model, export_dir: str, metadata: dict) -> str:
    return serving.export_saved_model(model, export_dir, FLAGS["query_batch_size"].value,
                                      FLAGS["gallery_batch_size"].value, extra_metadata=metadata)


def main(argv):
    del argv
    export.export_checkpoint(FLAGS, serving.EXPORT_TOOL, "kvmmn-train", restore, write)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
