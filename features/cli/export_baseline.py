r"""acp-baseline-export: write a trained re-ID baseline (acp-baseline-train) as a SavedModel for TensorFlow Serving,
with `embed` (uint8 images) and `embed_encoded` (JPEG / PNG files) signatures returning embedding, f3, f4, f5.

    acp-baseline-export --checkpoint=runs/baseline_market --export_dir=exported/baseline   # -> exported/baseline/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier acp-baseline-export folder. See `features.serving` for the signatures.
"""
from __future__ import annotations

import os

from engine import cli, export, run_dir
from features import serving, training

FLAGS = cli.new_flags()
export.define_flags(FLAGS, "acp-baseline-train")


def restore(checkpoint: str):
    """((model, config), metadata entries) of an acp-baseline-train checkpoint."""
    model, config, path = training.restore_model(checkpoint)
    stored = run_dir.read_json(os.path.join(os.path.dirname(path), training.MODEL_CONFIG_FILE))
    return (model, config), {"checkpoint": path, "training_config": stored}


def write(restored, export_dir: str, metadata: dict) -> str:
    model, config = restored
    return serving.export_saved_model(model, config, export_dir, extra_metadata=metadata)


def main(argv):
    del argv
    export.export_checkpoint(FLAGS, serving.EXPORT_TOOL, "acp-baseline-train", restore, write)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
