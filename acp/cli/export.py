r"""acp-export: write a trained ACP (acp-train) as a SavedModel for TensorFlow Serving, with a `correlations`
signature (the network) and a `rerank` signature (query and gallery embeddings in, re-ranked top-k out).

    acp-export --checkpoint=runs/acp_market --export_dir=exported/acp     # -> exported/acp/1

Each export is a new numbered version folder of --export_dir, written completely before it appears; --export_dir
must be new, empty or an earlier acp-export folder. See `acp.serving` for the signatures.
"""
from __future__ import annotations

import os

from absl import flags, logging

from acp import checkpoint as acp_checkpoint
from acp import serving
from engine import cli, run_dir
from rerank.knn import METRICS

FLAGS = cli.new_flags()
flags.DEFINE_string("checkpoint", None, "Required: an acp-train --train_dir (its latest checkpoint) or a checkpoint "
                    "prefix.", flag_values=FLAGS)
flags.DEFINE_string("export_dir", None, "Required: folder of the exports; each export is a new version folder in it "
                    "(<export_dir>/1, /2, ...).", flag_values=FLAGS)
flags.DEFINE_enum("metric", "cosine", METRICS, "Neighbour search of the rerank signature: the metric the model's "
                  "training sequences were mined with.", flag_values=FLAGS)


def main(argv):
    del argv
    checkpoint = cli.require(FLAGS, "checkpoint", "an acp-train --train_dir or checkpoint prefix")
    export_dir = cli.require(FLAGS, "export_dir", "the folder the numbered exports go to")
    run_dir.claim(export_dir, serving.EXPORT_TOOL)  # before loading anything: not into a folder not ours
    _, prefix = acp_checkpoint.resolve(checkpoint)
    model, preset, config = acp_checkpoint.restore_model(prefix)
    stored = run_dir.read_json(os.path.join(os.path.dirname(prefix), acp_checkpoint.CONFIG_FILE))
    version_dir = serving.export_saved_model(model, export_dir, preset, config, FLAGS["metric"].value,
                                             extra_metadata={"checkpoint": prefix, "training_config": stored})
    logging.info("exported %s to %s", prefix, version_dir)
    print(version_dir)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
