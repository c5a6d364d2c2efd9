r"""kvmmn-export: write a trained KVM-MN as a SavedModel with `embed` and `score` serving signatures.

    kvmmn-export --checkpoint=runs/market --export_dir=exported/kvmmn_market

See `kvmmn.serving` for the signatures and how to call them.
"""
from __future__ import annotations

from absl import app, flags, logging

from kvmmn.serving import export_saved_model
from kvmmn.training import load_trained_model

flags.DEFINE_string("checkpoint", None, "A kvmmn-train --train_dir (its latest checkpoint) or a checkpoint prefix.",
                    required=True)
flags.DEFINE_string("export_dir", None, "Folder to write the SavedModel to.", required=True)
flags.DEFINE_integer("gallery_batch_size", None, "score() compares queries with this many gallery images at a time "
                     "(default: all at once).", lower_bound=1)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    model, _, checkpoint, step = load_trained_model(FLAGS.checkpoint)
    export_saved_model(model, FLAGS.export_dir, FLAGS.gallery_batch_size,
                       extra_metadata={"checkpoint": checkpoint, "step": step})
    logging.info("exported %s (step %d) to %s", checkpoint, step, FLAGS.export_dir)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
