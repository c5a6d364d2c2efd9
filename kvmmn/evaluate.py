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

from absl import app, flags, logging

from data import datasets
from engine import atomic, run_dir
from engine import flags as engine_flags
from kvmmn.retrieval import evaluate_checkpoint, parse_shortlist
from kvmmn.training import parse_dataset_options

# Shared names are declared once: several binaries may be imported into one process (tests, notebooks).
declare = engine_flags.declare_once
declare(flags.DEFINE_string, "checkpoint", None, "Required: a kvmmn-train --train_dir (its latest checkpoint) or a "
        "checkpoint prefix; may contain {split}, replaced by each evaluated split.")
declare(flags.DEFINE_enum, "dataset", None, "Dataset to evaluate on (default: the run's).",
        enum_values=list(datasets.names()))
declare(flags.DEFINE_string, "data_root", None, "Dataset folder (default: the run's, for the run's dataset).")
declare(flags.DEFINE_string, "split", None,
        "Evaluate this split only (default: every split of the dataset's protocol).")
declare(flags.DEFINE_multi_string, "dataset_option", None,
        "Reader option NAME=VALUE, repeatable (default: the run's).")
flags.DEFINE_string("shortlist", "100", "Gallery images per query re-scored by KVM-MN, or 'all' (exhaustive).")
declare(flags.DEFINE_integer, "batch_size", 64, "Images per embedding batch.", lower_bound=1)
flags.DEFINE_integer("pair_batch_size", 1024, "(query, gallery) pairs scored at once.", lower_bound=1)
declare(flags.DEFINE_integer, "max_rank", 50, "Length of the CMC curve.", lower_bound=1)
flags.DEFINE_string("scratch_dir", None, "Keep the embedded memories in memory-mapped files here instead of RAM.")
declare(flags.DEFINE_string, "output", None,
        "Results JSON (default: eval_<dataset>.json beside the checkpoint).")
flags.DEFINE_bool("progress", True, "Show progress bars.")

FLAGS = flags.FLAGS


def default_output(checkpoint: str, dataset: str) -> str:
    base = checkpoint.split("{split}")[0]
    directory = base if os.path.isdir(base) else os.path.dirname(base) or "."
    return os.path.join(directory, f"eval_{dataset}.json")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.checkpoint:
        raise app.UsageError("--checkpoint is required")
    if FLAGS.output:  # before the evaluation: a folder given as --output is an error now, not after the work
        run_dir.check_output_file(FLAGS.output, "--output")
    results = evaluate_checkpoint(
        FLAGS.checkpoint, dataset=FLAGS.dataset, data_root=FLAGS.data_root, split=FLAGS.split,
        dataset_options=parse_dataset_options(FLAGS.dataset_option) if FLAGS.dataset_option is not None else None,
        shortlist=parse_shortlist(FLAGS.shortlist), batch_size=FLAGS.batch_size,
        pair_batch_size=FLAGS.pair_batch_size, max_rank=FLAGS.max_rank, scratch_dir=FLAGS.scratch_dir,
        progress=FLAGS.progress)
    output = FLAGS.output or default_output(FLAGS.checkpoint, results["dataset"])
    atomic.write_text(output, json.dumps(results, indent=2))
    for method in ("kvmmn", "pooled_l2"):
        mean = results["mean"][method]
        print(f"{method:>9}: rank-1 {100 * mean['rank-1']:.1f}%  rank-5 {100 * mean['rank-5']:.1f}%  "
              f"mAP {100 * mean['mAP']:.1f}%  ({len(results['splits'])} split(s))")
    logging.info("results written to %s", output)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
