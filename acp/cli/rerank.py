r"""acp-rerank: re-rank the query x gallery rows of a feature file and evaluate them under the dataset's protocol
(the library is `rerank.runner`; ACP joins the re-rankers through `acp.acp_rerank`).

    acp-rerank --features=features/msmt17.npz --method=acp --checkpoint=runs/acp_msmt17
    acp-rerank --features=features/msmt17.npz --method=k_reciprocal --param=k1=20 --param=k2=6
    acp-rerank --features=features/veri776.npz --method=alpha_qe --table_iv_neighbourhood --output_json=aqe.json
    acp-rerank --features=features/market1501.npz --method=none --top_list=baseline_top100.npz

Methods: `none` (alias `baseline`: the original distances, --metric), `acp` (Eq. 1 with a trained ACP; needs
--checkpoint; params k1 (default N/C of the gallery), k2 (6), batch_size, chunk_size) and every classic re-ranker
of `rerank`'s registry with its own defaults (`--param=NAME=VALUE` overrides, repeatable, typed by the defaults).

Prints and (with --output_json) writes: mAP, mINP, CMC, the number of queries, re-ranking and evaluation wall
time, the process's peak resident memory, "params" (every parameter the method ran with, defaults included) and
"notes" (each parameter changed from N/C or its default, and why; also printed as "note:" lines). --top_list
writes the first --top_k gallery items per query (ranking files, `rerank.rankings`: .json, .csv or .npz, with
absolute image paths and distances; labels and match flags when labelled). The protocol follows the file's
`dataset` field; --protocol overrides it.

Search mode: a feature file without labels (`acp-extract --query_images --gallery_images`, `acp-import-features`
without pids) is ranked, not evaluated; --top_list is then required:

    acp-rerank --features=crops.npz --method=k_reciprocal --top_k=10 --top_list=top10.json,top10.csv
"""
import json

from absl import flags, logging

from acp import checkpoint as acp_checkpoint
from acp import model as acp_model
from data import evaluation
from engine import atomic, cli, run_dir
from features import feature_file as feature_files
from rerank import rankings
from rerank import runner as rerank_runner

FLAGS = cli.new_flags()
flags.DEFINE_string("features", None, "Feature file (.npz, features.feature_file schema) with query and gallery "
                    "rows.", flag_values=FLAGS)
flags.DEFINE_enum("method", "none", list(rerank_runner.method_names()), "Re-ranking method.", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "For --method=acp: an acp-train --train_dir (latest checkpoint) or a "
                    "checkpoint prefix (.../ckpt-N).", flag_values=FLAGS)
flags.DEFINE_enum("preset", "basic", sorted(acp_model.PRESETS), "For --method=acp, when given: the ACP preset the "
                  "checkpoint must hold (an error names both otherwise).", flag_values=FLAGS)
flags.DEFINE_multi_string("param", [], "Method parameter NAME=VALUE, repeatable (e.g. k1=20, alpha=3); typed by the "
                          "method's defaults.", flag_values=FLAGS)
flags.DEFINE_bool("table_iv_neighbourhood", False, "Set the first-order neighbourhood of AQE, alpha-QE, "
                  "k-reciprocal, SCA and GNN (k or k1) to N/C, gallery images per identity, as ACP Table IV does; "
                  "--param values win.", flag_values=FLAGS)
flags.DEFINE_enum("metric", "cosine", ["cosine", "euclidean"], "Distance of --method=none and of ACP's neighbour "
                  "search.", flag_values=FLAGS)
flags.DEFINE_enum("protocol", None, list(evaluation.PROTOCOLS), "Evaluation protocol (default: the dataset's).",
                  flag_values=FLAGS)
flags.DEFINE_integer("max_rank", 50, "Length of the CMC curve.", lower_bound=1, flag_values=FLAGS)
cli.define(FLAGS, "ranks", tuple[int, ...], (1, 5, 10), "CMC ranks to print.", cli.AT_LEAST_ONE)
flags.DEFINE_string("output_json", None, "Write the metrics and timings to this JSON file.", flag_values=FLAGS)
cli.define(FLAGS, "top_list", tuple[str, ...], (), "Write the --top_k ranked gallery items per query to these "
           "ranking files (comma list; each .json, .csv or .npz by its extension).")
cli.validate(FLAGS, "top_list", lambda paths: [rankings.check_extension(path, "--top_list") for path in paths])
flags.DEFINE_integer("top_k", 100, "Length of the --top_list lists (capped at the gallery size).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("verbose", 1, "Progress display (0: none).", lower_bound=0, upper_bound=2, flag_values=FLAGS)


def method_params(method: str) -> dict:
    """--param items typed by `method`'s defaults (a default of None, derived from the gallery, is an integer);
    integers are at least 1, floats finite, lambda_value in [0, 1]."""
    defaults = rerank_runner.default_params(method)
    kinds = {name: None if value is None else type(value) for name, value in defaults.items()}
    checks = {name: cli.AT_LEAST_ONE for name, kind in kinds.items() if kind in (int, None)}
    checks["lambda_value"] = cli.FRACTION
    return cli.parse_assignments(FLAGS["param"].value, kinds, f"--param (method {method})", checks=checks)


def main(argv):
    del argv
    path = cli.require(FLAGS, "features", "a feature file written by acp-extract or acp-import-features")
    method = FLAGS["method"].value
    params = method_params(method)
    outputs = [("output_json", FLAGS["output_json"].value)] + [("top_list", p) for p in FLAGS["top_list"].value]
    for flag, output in outputs:  # before any work: a folder where a file goes is an error now
        if output:
            run_dir.check_output_file(output, f"--{flag}")
    features = feature_files.load_features(path)
    logging.info("%s", features.summary())
    if not (features.query.labelled and features.gallery.labelled or FLAGS["top_list"].value):
        raise cli.UserError(f"{path}: search mode (images without labels): nothing is evaluated; give "
                            "--top_list=FILE.json[,FILE.csv] for each query's ranked gallery images")
    model = None
    if method == "acp":
        checkpoint = FLAGS["checkpoint"].value
        if not checkpoint:
            raise cli.UserError("--method=acp needs --checkpoint (an acp-train --train_dir or checkpoint prefix)")
        model, preset, config = acp_checkpoint.restore_model(
            checkpoint, FLAGS["preset"].value if FLAGS["preset"].present else None)
        logging.info("restored %s from %s", acp_checkpoint.describe(preset, config), checkpoint)
    top_list, top_k = FLAGS["top_list"].value, FLAGS["top_k"].value
    outcome = rerank_runner.evaluate_method(
        features, method, params, model, FLAGS["metric"].value, FLAGS["protocol"].value, FLAGS["max_rank"].value,
        FLAGS["table_iv_neighbourhood"].value, top_k if top_list else 0, FLAGS["verbose"].value)
    if top_list:
        written = rerank_runner.write_top_list(top_list, features, *outcome.pop("top"),
                                               meta={"method": method, "params": outcome["params"]})
        print(f"top-{min(top_k, outcome['num_gallery'])} lists written to {', '.join(written)}")
    for note in outcome["notes"]:
        print(f"note: {note}")
    print(rerank_runner.format_outcome(outcome, FLAGS["ranks"].value))
    if FLAGS["output_json"].value:
        written = atomic.write_text(FLAGS["output_json"].value, json.dumps(outcome, indent=1))
        print(f"results written to {written}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
