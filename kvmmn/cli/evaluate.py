r"""kvmmn-eval: evaluate a trained KVM-MN under its dataset's protocol and write a results JSON.

Every query and gallery image is embedded once; each query's gallery is ranked by the L2 distance of pooled
backbone features, its first --shortlist images are re-scored by the matching network and put first in score order,
the rest follow in L2 order (`kvmmn.retrieval`). CMC, mAP and mINP are reported for KVM-MN and for the pooled-L2
ranking of the same backbone. CUHK03 and CUHK01 average their splits, one trained model per split:

The results JSON holds "params", every setting used (the run's dataset, data root and options when not given,
the splits, shortlist, batch sizes, max_rank), beside per-split and mean CMC / mAP / mINP.

    kvmmn-eval --checkpoint=runs/market --shortlist=100
    kvmmn-eval --checkpoint='runs/cuhk03/{split}' --dataset=cuhk03_labeled --data_root=/data/cuhk03 --shortlist=all
"""
from __future__ import annotations

import json
import os

from absl import flags, logging

from engine import atomic, cli, run_dir
from kvmmn.retrieval import evaluate_checkpoint, parse_shortlist

FLAGS = cli.new_flags()
flags.DEFINE_string("checkpoint", None, "Required: a kvmmn-train --train_dir (its latest checkpoint) or a checkpoint "
                    "prefix; may contain {split}, replaced by each evaluated split.", flag_values=FLAGS)
cli.define_dataset_flags(FLAGS, default=None, strict_decoding=True, root_help="Dataset folder (default: the run's, for the run's dataset).",
                         split_help="Evaluate this split only (default: every split of the dataset's protocol).",
                         options_help="Reader option NAME=VALUE, repeatable (default: the run's; needs --dataset).")
FLAGS["dataset"].help = "Dataset to evaluate on (default: the run's)."
flags.DEFINE_string("shortlist", "100", "Gallery images per query re-scored by KVM-MN, or 'all' (exhaustive).",
                    flag_values=FLAGS)
cli.validate(FLAGS, "shortlist", parse_shortlist)
flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("pair_batch_size", 1024, "(query, gallery) pairs scored at once.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("max_rank", 50, "Length of the CMC curve.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("scratch_dir", None, "Keep the embedded memories in memory-mapped files here instead of RAM.",
                    flag_values=FLAGS)
flags.DEFINE_string("output", None, "Results JSON (default: eval_<dataset>.json beside the checkpoint).",
                    flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show progress bars.", flag_values=FLAGS)


def default_output(checkpoint: str, dataset: str) -> str:
    base = checkpoint.split("{split}")[0]
    directory = base if os.path.isdir(base) else os.path.dirname(base) or "."
    return os.path.join(directory, f"eval_{dataset}.json")


def main(argv):
    del argv
    checkpoint = cli.require(FLAGS, "checkpoint", "a kvmmn-train --train_dir or checkpoint prefix")
    if FLAGS["output"].value:  # before the evaluation: a folder given as --output is an error now, not after the work
        run_dir.check_output_file(FLAGS["output"].value, "--output")
    cli.apply_strict_decoding(FLAGS)
    options = None
    if FLAGS["dataset_option"].present:
        cli.require(FLAGS, "dataset", "--dataset_option values are typed by the dataset's reader")
        options = cli.dataset_options(FLAGS)
    results = evaluate_checkpoint(
        checkpoint, dataset=FLAGS["dataset"].value, data_root=FLAGS["data_root"].value, split=FLAGS["split"].value,
        dataset_options=options, shortlist=parse_shortlist(FLAGS["shortlist"].value),
        batch_size=FLAGS["batch_size"].value, pair_batch_size=FLAGS["pair_batch_size"].value,
        max_rank=FLAGS["max_rank"].value, scratch_dir=FLAGS["scratch_dir"].value, progress=FLAGS["progress"].value)
    output = FLAGS["output"].value or default_output(checkpoint, results["dataset"])
    atomic.write_text(output, json.dumps(results, indent=2))
    for method in ("kvmmn", "pooled_l2"):
        mean = results["mean"][method]
        print(f"{method:>9}: rank-1 {100 * mean['rank-1']:.1f}%  rank-5 {100 * mean['rank-5']:.1f}%  "
              f"mAP {100 * mean['mAP']:.1f}%  ({len(results['splits'])} split(s))")
    print(f"results written to {output}")
    logging.info("results written to %s", output)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
