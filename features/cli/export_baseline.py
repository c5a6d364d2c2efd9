r"""acp-baseline-export: write a trained re-ID baseline (acp-baseline-train) as a SavedModel for TensorFlow Serving,
with `embed` (uint8 images) and `embed_encoded` (JPEG / PNG files) signatures returning embedding, f3, f4, f5.

    acp-baseline-export --checkpoint=runs/baseline_market --export_dir=exported/baseline   # -> exported/baseline/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier acp-baseline-export folder. See `features.serving` for the signatures.
"""
from __future__ import annotations

import os

from absl import flags, logging

from engine import cli, run_dir
from features import serving, training

FLAGS = cli.new_flags()
flags.DEFINE_string("checkpoint", None, "Required: training directory of acp-baseline-train (its latest checkpoint) "
                    "or one checkpoint prefix (.../ckpt-N).", flag_values=FLAGS)
flags.DEFINE_string("export_dir", None, "Required: folder of the exports; each export is a new version folder in it "
                    "(<export_dir>/1, /2, ...).", flag_values=FLAGS)


def main(argv):
    del argv
    checkpoint = cli.require(FLAGS, "checkpoint", "an acp-baseline-train --train_dir or checkpoint prefix")
    export_dir = cli.require(FLAGS, "export_dir", "the folder the numbered exports go to")
    run_dir.claim(export_dir, serving.EXPORT_TOOL)  # before loading anything: not into a folder not ours
    model, config, path = training.restore_model(checkpoint)
    stored = run_dir.read_json(os.path.join(os.path.dirname(path), training.MODEL_CONFIG_FILE))
    version_dir = serving.export_saved_model(model, config, export_dir,
                                             extra_metadata={"checkpoint": path, "training_config": stored})
    logging.info("exported %s to %s", path, version_dir)
    print(version_dir)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
