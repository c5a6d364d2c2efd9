"""The main job of the README: a dataset end to end through the evaluation protocol, on the synthetic dataset by
default (generated on first use).

Three parts, each selectable with `--parts`:
- `histogram`: the non-learned colour-histogram baseline of `data.handcrafted` beside random ranking, on any dataset;
- `kvmmn`: a small KVM-MN trained on CPU on the synthetic dataset (`kvmmn.demo`), its CMC / mAP beside the
  pooled-L2 ranking of the same backbone;
- `acp`: the ResNet-50 baseline trained briefly, its features re-ranked by AQE, alpha-QE, k-reciprocal and a
  briefly trained ACP (`acp.demo`).
The learned parts train on the synthetic dataset only (real datasets go through the binaries, see WORKSPACE.md).

    python -m experiments.demo                                   # synthetic dataset, default root, all parts
    python -m experiments.demo --parts=histogram --dataset=market1501 --data_root=/data/Market-1501-v15.09.15
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from data import datasets, evaluation, handcrafted  # noqa: E402
from engine.flags import declare_once  # noqa: E402

PARTS = ("histogram", "kvmmn", "acp")

FLAGS = flags.FLAGS
# Shared names are declared once: the test suite imports this module beside the binaries that also declare them.
declare_once(flags.DEFINE_string, "dataset", "synthetic", f"Dataset to evaluate on: {', '.join(datasets.names())}.")
declare_once(flags.DEFINE_string, "data_root", None, "Dataset folder; for the synthetic dataset the default is "
             "data.synthetic.DEFAULT_ROOT, where it is generated on first use.")
declare_once(flags.DEFINE_string, "split", None, "Split of the dataset (default: the reader's default split).")
declare_once(flags.DEFINE_integer, "seed", 0, "Seed of the single-shot sampling and of the random-ranking reference.")
flags.DEFINE_list("parts", list(PARTS), f"Parts of the demo to run, from {', '.join(PARTS)}; kvmmn and acp need "
                  "--dataset=synthetic.")
flags.DEFINE_integer("num_stripes", 6, "Horizontal stripes of the colour histograms.")
flags.DEFINE_integer("bins", 8, "Histogram bins per colour channel.")
flags.DEFINE_float("center_sigma", 0.15, "Width of the Gaussian that weighs pixels by their horizontal distance to "
                   "the image centre, as a fraction of the image width; 0 weighs all pixels equally.")
flags.DEFINE_bool("center_per_camera", True, "Subtract each camera's mean feature (query and gallery together).")
declare_once(flags.DEFINE_enum, "metric", "euclidean", "Distance between features.", enum_values=["euclidean", "cosine"])
declare_once(flags.DEFINE_integer, "max_rank", 50, "Length of the CMC curve.", lower_bound=1)


def evaluate_baseline(dataset: str, root: str | None, split: str | None = None, num_stripes: int = 6, bins: int = 8,
                      center_sigma: float | None = 0.15, center_per_camera: bool = True, metric: str = "euclidean",
                      max_rank: int = 50, seed: int = 0, progress: bool = False,
                      load_options: dict | None = None) -> dict:
    """Colour-histogram features (`data.handcrafted`) of the record's query and gallery, optionally centred per
    camera, evaluated under the record's protocol.

    `root` None is the synthetic dataset's default folder; `load_options` go to `data.datasets.load` (for the
    synthetic dataset, `data.synthetic.SyntheticConfig` fields).

    Returns a dict with `record` (the `data.record.Record`), `baseline` and `chance` (result dicts of
    `data.evaluation.evaluate_features`; `chance` ranks random features) and `feature_dim`.
    """
    record = datasets.load(dataset, root, split=split, **(load_options or {}))
    labels = [np.array([getattr(s, field) for s in subset])
              for field in ("pid", "camid") for subset in (record.query, record.gallery)]
    options = dict(protocol=record.protocol, max_rank=max_rank, seed=seed)
    features = [handcrafted.histogram_features([s.path for s in subset], num_stripes, bins, center_sigma,
                                               progress=progress) for subset in (record.query, record.gallery)]
    if center_per_camera:
        centered = handcrafted.center_per_camera(np.concatenate(features), np.concatenate(labels[2:]))
        features = [centered[:len(record.query)], centered[len(record.query):]]
    baseline = evaluation.evaluate_features(*features, *labels, metric=metric, progress=progress, **options)
    rng = np.random.default_rng(seed)
    noise = [rng.standard_normal((len(f), 16), dtype=np.float32) for f in features]
    chance = evaluation.evaluate_features(*noise, *labels, metric="euclidean", **options)
    return {"record": record, "baseline": baseline, "chance": chance, "feature_dim": features[0].shape[1]}


def report(outcome: dict, ranks=(1, 5, 10)) -> str:
    """The demo's printed summary: the record, the baseline's metrics and the random-ranking reference."""
    chance = outcome["chance"]
    chance_ranks = ", ".join(f"rank-{r} {100 * chance['cmc'][r - 1]:.1f}%" for r in ranks
                             if r <= len(chance["cmc"]))
    return "\n".join([
        outcome["record"].summary(), "",
        f"Colour-histogram baseline ({outcome['feature_dim']}-d), protocol {outcome['record'].protocol}:",
        evaluation.format_results(outcome["baseline"], ranks), "",
        f"Random ranking: mAP {100 * chance['mAP']:.1f}%, mINP {100 * chance['mINP']:.1f}%, {chance_ranks}"])


def check_parts(parts, dataset: str) -> tuple[str, ...]:
    """The demo parts to run, validated against PARTS and the dataset (learned parts need the synthetic one)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise app.UsageError(f"--parts={','.join(parts)}: choose one or more of {', '.join(PARTS)}")
    if dataset not in datasets.names():
        raise app.UsageError(f"--dataset={dataset}: unknown; known datasets: {', '.join(datasets.names())}")
    learned = [p for p in parts if p != "histogram"]
    if learned and dataset != "synthetic":
        raise app.UsageError(f"--parts={','.join(learned)} train on the synthetic dataset only; use --parts=histogram "
                             f"with --dataset={dataset}, and the kvmmn-* / acp-* binaries for real datasets")
    return tuple(p for p in PARTS if p in parts)


def main(argv):
    del argv
    parts = check_parts(FLAGS.parts, FLAGS.dataset)
    if FLAGS.data_root is None and FLAGS.dataset != "synthetic":
        raise app.UsageError(f"--data_root is required for --dataset={FLAGS.dataset}")
    if "histogram" in parts:
        outcome = evaluate_baseline(FLAGS.dataset, FLAGS.data_root, FLAGS.split, FLAGS.num_stripes, FLAGS.bins,
                                    FLAGS.center_sigma or None, FLAGS.center_per_camera, FLAGS.metric,
                                    FLAGS.max_rank, FLAGS.seed, progress=True)
        print(report(outcome))
    # Imported here so that `--parts=histogram` does not pay for building the models.
    if "kvmmn" in parts:
        from kvmmn import demo as kvmmn_demo
        print("\n== KVM-MN ==")
        kvmmn_demo.run_demo(FLAGS.data_root)
    if "acp" in parts:
        from acp import demo as acp_demo
        print("\n== ACP re-ranking ==")
        acp_demo.run_demo(FLAGS.data_root)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
