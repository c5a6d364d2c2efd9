r"""acp-rerank: re-rank the query x gallery rows of a feature file and evaluate them under the dataset's protocol
(the library is `acp.rerank_runner`).

    acp-rerank --features=features/msmt17.npz --method=acp --checkpoint=runs/acp_msmt17
    acp-rerank --features=features/msmt17.npz --method=k_reciprocal --param=k1=20 --param=k2=6
    acp-rerank --features=features/veri776.npz --method=alpha_qe --table_iv_neighbourhood --output_json=aqe.json
    acp-rerank --features=features/market1501.npz --method=none --top_list=baseline_top100.npz

Methods: `none` (alias `baseline`: the original distances, --metric), `acp` (Eq. 1 with a trained ACP; needs
--checkpoint; params k1 (default N/C of the gallery), k2 (6), batch_size, chunk_size) and every classic re-ranker
of `rerank.METHODS` with its own defaults (`--param=NAME=VALUE` overrides, repeatable).

Prints and (with --output_json) writes: mAP, mINP, CMC, the number of queries, re-ranking and evaluation wall
time, the process's peak resident memory, "params" (every parameter the method ran with, defaults included, e.g.
k1 and k2 as used) and "notes" (each parameter changed from N/C or its default, and why; also printed as "note:"
lines): a neighbourhood derived from N/C is at least 2, since N/C = 1 (one gallery image per identity) would
return the baseline unchanged, and a k2 above k1 is lowered to k1 (GNN, ACP). --top_list writes the first --top_k gallery items per query (.npz:
`indices` int64 [Q, top_k] into the gallery rows, `distances` float32, `query_path`, `gallery_path`, `query_pid`,
`gallery_pid`). The protocol follows the file's `dataset` field; --protocol overrides it (e.g. market1501 for
CUHK03's 767/700 split).
"""
import json

from absl import app, flags, logging

from acp import checkpoint as acp_checkpoint
from acp import model as acp_model
from acp import rerank_runner
from data import evaluation
from engine import atomic
from engine import flags as engine_flags
from features import feature_file as feature_files

declare = engine_flags.declare_once
declare(flags.DEFINE_string, "features", None,
        "Feature file (.npz, features.feature_file schema) with query and gallery rows.")
flags.DEFINE_enum("method", "none", list(rerank_runner.METHOD_NAMES), "Re-ranking method.")
declare(flags.DEFINE_string, "checkpoint", None, "For --method=acp: an acp-train --train_dir (latest checkpoint) or "
        "a checkpoint prefix (.../ckpt-N).")
declare(flags.DEFINE_enum, "preset", "basic", "For --method=acp, when given: the ACP preset the checkpoint must "
        "hold (an error names both otherwise).", enum_values=sorted(acp_model.PRESETS))
flags.DEFINE_multi_string("param", [], "Method parameter NAME=VALUE, repeatable (e.g. k1=20, alpha=3).")
flags.DEFINE_bool("table_iv_neighbourhood", False, "Set the first-order neighbourhood of AQE, alpha-QE, "
                  "k-reciprocal, SCA and GNN (k or k1) to N/C, gallery images per identity, as ACP Table IV does; "
                  "--param values win.")
declare(flags.DEFINE_enum, "metric", "cosine", "Distance of --method=none and of ACP's neighbour search.",
        enum_values=["cosine", "euclidean"])
declare(flags.DEFINE_enum, "protocol", None, "Evaluation protocol (default: the dataset's).",
        enum_values=list(evaluation.PROTOCOLS))
declare(flags.DEFINE_integer, "max_rank", 50, "Length of the CMC curve.", lower_bound=1)
flags.DEFINE_list("ranks", ["1", "5", "10"], "CMC ranks to print.")
declare(flags.DEFINE_string, "output_json", None, "Write the metrics and timings to this JSON file.")
flags.DEFINE_string("top_list", None, "Write the --top_k ranked gallery items per query to this .npz file.")
flags.DEFINE_integer("top_k", 100, "Length of the --top_list lists (capped at the gallery size).", lower_bound=1)
declare(flags.DEFINE_integer, "verbose", 1, "Progress bars (0: none).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.features:
        raise app.UsageError("--features is required: a feature file written by acp-extract or acp-import-features")
    try:
        ranks = tuple(int(r) for r in FLAGS.ranks)
        params = rerank_runner.parse_params(FLAGS.param)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    features = feature_files.load_features(FLAGS.features)
    logging.info("%s", features.summary())
    model = None
    if FLAGS.method == "acp":
        if not FLAGS.checkpoint:
            raise app.UsageError("--method=acp needs --checkpoint (an acp-train --train_dir or checkpoint prefix)")
        model, preset, config = acp_checkpoint.restore_model(
            FLAGS.checkpoint, FLAGS.preset if FLAGS["preset"].present else None)
        logging.info("restored %s from %s", acp_checkpoint.describe(preset, config), FLAGS.checkpoint)
    outcome = rerank_runner.evaluate_method(
        features, FLAGS.method, params, model, FLAGS.metric, FLAGS.protocol, FLAGS.max_rank,
        FLAGS.table_iv_neighbourhood, FLAGS.top_k if FLAGS.top_list else 0, FLAGS.verbose)
    if FLAGS.top_list:
        path = rerank_runner.write_top_list(FLAGS.top_list, features, *outcome.pop("top"))
        print(f"top-{min(FLAGS.top_k, outcome['num_gallery'])} lists written to {path}")
    for note in outcome["notes"]:
        print(f"note: {note}")
    print(rerank_runner.format_outcome(outcome, ranks))
    if FLAGS.output_json:
        atomic.write_text(FLAGS.output_json, json.dumps(outcome, indent=1))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
