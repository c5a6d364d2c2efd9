r"""kvmmn-export: write a trained KVM-MN as a SavedModel with `embed` and `score` serving signatures.

    kvmmn-export --checkpoint=runs/market --export_dir=exported/kvmmn_market   # -> exported/kvmmn_market/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier kvmmn-export folder. See `kvmmn.serving` for the signatures and how to call them.
"""
from __future__ import annotations

from absl import app, flags, logging

from engine import flags as engine_flags
from engine import run_dir
from kvmmn.serving import EXPORT_TOOL, export_saved_model
from kvmmn.training import load_trained_model

# Shared names are declared once: several binaries may be imported into one process (tests, notebooks).
declare = engine_flags.declare_once
declare(flags.DEFINE_string, "checkpoint", None,
        "Required: a kvmmn-train --train_dir (its latest checkpoint) or a checkpoint prefix.")
flags.DEFINE_string("export_dir", None, "Required: folder of the exports; each export is a new version folder in it "
                    "(<export_dir>/1, /2, ...).")
flags.DEFINE_integer("gallery_batch_size", None, "score() compares queries with this many gallery images at a time "
                     "(default: all at once).", lower_bound=1)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("checkpoint", "export_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    run_dir.claim(FLAGS.export_dir, EXPORT_TOOL)  # before loading anything: not into a folder that is not ours
    model, _, checkpoint, step = load_trained_model(FLAGS.checkpoint)
    version_dir = export_saved_model(model, FLAGS.export_dir, FLAGS.gallery_batch_size,
                                     extra_metadata={"checkpoint": checkpoint, "step": step})
    logging.info("exported %s (step %d) to %s", checkpoint, step, version_dir)
    print(version_dir)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
