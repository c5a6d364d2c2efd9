r"""acp-export: write a trained ACP (acp-train) as a SavedModel for TensorFlow Serving, with a `correlations`
signature (the network) and a `rerank` signature (query and gallery embeddings in, re-ranked top-k out).

    acp-export --checkpoint=runs/acp_market --export_dir=exported/acp     # -> exported/acp/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier acp-export folder. See `acp.serving` for the signatures.
"""
from __future__ import annotations

import os

from absl import flags

from acp import checkpoint as acp_checkpoint
from acp import serving
from engine import cli, export, run_dir
from rerank.knn import METRICS

FLAGS = cli.new_flags()
export.define_flags(FLAGS, "acp-train")
flags.DEFINE_enum("metric", "cosine", METRICS, "Neighbour search of the rerank signature: the metric the model's "
                  "training sequences were mined with.", flag_values=FLAGS)


def restore(checkpoint: str):
    """((model, preset, config), metadata entries) of an acp-train checkpoint."""
    _, prefix = acp_checkpoint.resolve(checkpoint)
    model, preset, config = acp_checkpoint.restore_model(prefix)
    stored = run_dir.read_json(os.path.join(os.path.dirname(prefix), acp_checkpoint.CONFIG_FILE))
    return (model, preset, config), {"checkpoint": prefix, "training_config": stored}


def write(restored, export_dir: str, metadata: dict) -> str:
    model, preset, config = restored
    return serving.export_saved_model(model, export_dir, preset, config, FLAGS["metric"].value,
                                      extra_metadata=metadata)


def main(argv):
    del argv
    export.export_checkpoint(FLAGS, serving.EXPORT_TOOL, "acp-train", restore, write)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
