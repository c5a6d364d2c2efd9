"""The ACP part of the README's demo: the re-ID baseline (the `features` package) trained on the synthetic dataset's
training identities, its features extracted, ACP trained on the training features, and the baseline against AQE,
alpha-QE, k-reciprocal and ACP re-ranking on the test identities, printed as one table (mAP, rank-1, seconds).

    from acp.demo import run_demo
    outcome = run_demo()                    # synthetic dataset at data.synthetic.DEFAULT_ROOT
    outcome["results"]["acp"]["mAP"], outcome["results"]["baseline"]["rank1"]

Sized for two CPU cores and about two and a half minutes, which sets hard limits (no pretrained weights can be
downloaded here). The recipe and why each part departs from the papers:
- Baseline: the `features` package's BoT ResNet with one bottleneck per stage instead of ResNet-50's (3, 4, 6, 3)
  (`DemoConfig.blocks=None` restores ResNet-50), on 64 x 32 inputs, from random weights: 20 epochs of P x K = 8 x 4
  (1140 steps on the default world) at Adam 1e-3 without warm-up, x0.1 after epoch 15 (BoT: ImageNet weights, 120 epochs at 3.5e-4 with
  10 warm-up epochs, decays at 40 and 70). ResNet-50 itself stays at chance in the steps the budget allows; the
  short schedule needs the higher rate, and the one decay near the end is worth several points of mAP.
  Everything else is BoT's (label-smoothed cross-entropy + batch-hard triplet, BNNeck, flip, random erasing,
  L2 5e-4, batch-norm momentum 0.1 in PyTorch's convention).
- ACP: reduced (one encoder layer, d = 64, 4 heads, d_m = 16, no fusion dropout; Table II's Basic has 3 layers,
  d = 256, 16 heads, d_m = 32, p_d = 0.4) and trained for 20 epochs of 16 sequences (2280 steps) at 1e-3 after a
  half-epoch warm-up (the paper: 2e-4, 10 warm-up epochs, "until convergence"). The sequences are the paper's
  (`acp.sequences`: l1 = 24 from the correct matches and the first false ones, l2 = 6). ACP's correlations stay
  nearly constant for the first few hundred steps (its re-ranking is then the average query expansion, AQE) and
  separate correct from false matches only after that, so the budget goes to epochs rather than to width.
Tuned on a synthetic world of another seed (`seed=1`: other identities and cameras; generator version 1, whose
look-alikes differed in colour), never on these test identities: there 20 baseline epochs (decay after 15) gave mAP
36% (colour histograms 30%), k-reciprocal 36%, ACP 41%. The same schedule runs on the version-2 world (twice the
training images per epoch, so twice the steps); it was not re-tuned there. Re-ranking pays
off when many of an image's k1 nearest neighbours are correct matches (the paper's baselines have rank-1 74-96%);
a weaker baseline gives it less to work with, and re-rankers can then lower mAP. Every stage keeps its output in
`work_dir` (baseline and ACP checkpoints, the feature file): a second run resumes or reuses them.

Re-ranking parameters follow ACP Table IV: every method's first-order neighbourhood (AQE and alpha-QE k,
k-reciprocal k1, ACP k1) is N/C of the gallery; alpha = 3, k-reciprocal k2 = 6 and lambda = 0.3, ACP k2 = 6.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from absl import logging
import tensorflow as tf

from acp import model as acp_model
from acp import training
from data import datasets, synthetic
from engine import distribute, run_dir
from engine.seed import set_seed
from engine.train_loop import LoopConfig, RestoreError
from features import extraction
from features import feature_file as feature_files
from features import training as baseline_training
from features.head import ModelConfig
from features.recipe import Recipe
from rerank import runner as rerank_runner

DEMO_METHODS = ("baseline", "aqe", "alpha_qe", "k_reciprocal", "acp")
METHOD_TITLES = {"baseline": "baseline", "aqe": "AQE", "alpha_qe": "alpha-QE", "k_reciprocal": "k-reciprocal",
                 "acp": "ACP"}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """How long and how large the demo's two trainings are."""

    image_size: tuple[int, int] = (64, 32)
    blocks: tuple[int, ...] | None = (1, 1, 1, 1)  # bottlenecks per stage; None: ResNet-50's (3, 4, 6, 3)
    baseline_recipe: Recipe = Recipe(num_identities=8, num_instances=4, epochs=20, learning_rate=1e-3,
                                     warmup_epochs=0, decay_epochs=(15,))
    acp_preset: str = "basic"
    acp_overrides: tuple[tuple[str, object], ...] = (("num_layers", 1), ("model_dim", 64), ("num_heads", 4),
                                                     ("memory_dim", 16), ("fusion_dropout", 0.0))
    acp_recipe: training.Recipe = training.Recipe(learning_rate=1e-3, epochs=20, warmup_epochs=0.5)
    seed: int = 0


def _features_are_current(feature_file: str, baseline_dir: str) -> bool:
    """Whether `feature_file` was written after the baseline's latest checkpoint and records its protocol (a
    format-1 file of an older version does not: it is extracted again rather than evaluated with a warning)."""
    latest = tf.train.latest_checkpoint(baseline_dir)
    if latest is None or not os.path.isfile(feature_file) or (
            os.path.getmtime(feature_file) < os.path.getmtime(latest + ".index")):
        return False
    with np.load(feature_file) as archive:
        return "protocol" in archive.files and bool(str(archive["protocol"]))


def train_and_extract(record, work_dir: str, config: DemoConfig, strategy, verbose: int) -> str:
    """Train the baseline on `record.train` (resumably) and write the feature file of all three subsets."""
    baseline_dir = os.path.join(work_dir, "baseline")
    model_config = ModelConfig(num_classes=record.num_train_pids, image_size=config.image_size, blocks=config.blocks)
    set_seed(config.seed)
    result = baseline_training.train(record, model_config, config.baseline_recipe,
                                     LoopConfig(baseline_dir, 0, checkpoint_every=10_000, log_every=10,
                                                show_progress=bool(verbose)), strategy, seed=config.seed)
    feature_file = os.path.join(work_dir, "features.npz")
    if not _features_are_current(feature_file, baseline_dir):
        extraction.extract(result["model"], model_config, record, feature_file,
                           checkpoint=tf.train.latest_checkpoint(baseline_dir), show_progress=bool(verbose),
                           overwrite=True)
    return feature_file


def train_acp(features: feature_files.FeatureSet, work_dir: str, config: DemoConfig, strategy, verbose: int):
    """Train (or resume) the demo's ACP in `work_dir`/acp. A run there that this version cannot resume (one
    written before a change to what checkpoints hold, e.g. the dropout states) is the demo's own cache: it is
    deleted, with a warning, and trained again, rather than stopping the demo."""
    train_dir = os.path.join(work_dir, "acp")
    acp_config = acp_model.make_config(config.acp_preset, **dict(config.acp_overrides))

    def train():
        set_seed(config.seed)
        return training.train(features, LoopConfig(train_dir, 0, checkpoint_every=10_000, log_every=10,
                                                   show_progress=bool(verbose)),
                              config.acp_preset, acp_config, config.acp_recipe, strategy, seed=config.seed,
                              verbose=verbose)["model"]

    try:
        return train()
    except RestoreError as err:
        logging.warning("the demo's ACP run in %s was written by an older version and cannot resume (%s); "
                        "training it again", train_dir, str(err).splitlines()[0])
        run_dir.remove_owned(train_dir, training.TOOL)
        return train()


def compare(features: feature_files.FeatureSet, model, methods=DEMO_METHODS, verbose: int = 0) -> dict[str, dict]:
    """{method: its outcome} (`rerank_runner.evaluate_method`, Table IV's neighbourhoods) plus, per method,
    "rank1" (= cmc[0]) and "distances", the dense query x gallery float32 matrix the method ranks by (the demo's
    gallery is small; pictures and the protocol's same-camera removal need every column)."""
    results = {}
    for method in methods:
        outcome = rerank_runner.evaluate_method(features, method, model=model if method == "acp" else None,
                                                table_iv_neighbourhood=True, top_k=len(features.gallery),
                                                verbose=verbose)
        # top_k over the whole gallery is every distance, sorted: scatter it back to gallery order.
        sorted_distances, order = outcome.pop("top")
        distances = np.empty_like(sorted_distances)
        np.put_along_axis(distances, order, sorted_distances, axis=1)
        results[method] = {**outcome, "rank1": outcome["cmc"][0], "distances": distances}
    return results

def format_table(results: dict[str, dict]) -> str:
    lines = [f"{'method':<14}{'mAP':>8}{'rank-1':>9}{'seconds':>9}  parameters"]
    for method, outcome in results.items():
        lines.append(f"{METHOD_TITLES.get(method, method):<14}{100 * outcome['mAP']:>7.1f}%"
                     f"{100 * outcome['cmc'][0]:>8.1f}%{outcome['seconds_rerank'] + outcome['seconds_evaluate']:>9.2f}"
                     f"  {outcome['params']}")
    return "\n".join(lines)


def run_demo(data_root: str | None = None, work_dir: str | None = None, config: DemoConfig = DemoConfig(),
             load_options: dict | None = None, verbose: int = 1, print_fn=print) -> dict:
    """Baseline -> features -> ACP -> re-ranking comparison on the synthetic dataset; prints the table.

    Args:
      data_root: the synthetic dataset's folder (generated there on first use); None: its default root.
      work_dir: where checkpoints and the feature file go; default `<data_root>_acp_demo` beside the data.
      config: sizes of the two trainings.
      load_options: `data.synthetic.SyntheticConfig` fields for a non-default synthetic dataset (tests).
    Returns a dict:
      "results": {method: outcome} for the methods of DEMO_METHODS ("baseline", "aqe", "alpha_qe",
        "k_reciprocal", "acp"), each with "mAP" and "rank1" (fractions), "cmc" (rank-1 is cmc[0]), "mINP",
        "params", "seconds_rerank", "seconds_evaluate" and "distances" ((queries, gallery) float32, the ranking
        the method evaluates; row i is features.query's row i, column j features.gallery's row j);
      "distances": {method: results[method]["distances"]} (the same arrays, for drawing rankings);
      "features": the `features.feature_file.FeatureSet` of the feature file (`.query` / `.gallery` rows with `path`,
        `pid`, `camid`), "feature_file", "record" (the `data.record.Record`), "protocol", "table" (the printed text),
        "work_dir" and "seconds".
    """
    start = time.perf_counter()
    record = datasets.load("synthetic", data_root, progress=bool(verbose), **(load_options or {}))
    if work_dir is None:
        root = data_root or synthetic.default_root(synthetic.SyntheticConfig(**(load_options or {})))
        work_dir = os.path.normpath(root) + "_acp_demo"
    strategy = distribute.make_strategy("one_device")
    print_fn(record.summary())
    feature_file = train_and_extract(record, work_dir, config, strategy, verbose)
    features = feature_files.load_features(feature_file)
    model = train_acp(features, work_dir, config, strategy, verbose)
    results = compare(features, model)
    table = format_table(results)
    protocol = results["baseline"]["protocol"]
    seconds = time.perf_counter() - start
    print_fn(f"\nRe-ranking the baseline's features ({len(features.query)} queries x {len(features.gallery)} "
             f"gallery, protocol {protocol}):\n{table}\n(ACP demo in {seconds:.0f} s; work files in {work_dir})")
    return {"results": results, "distances": {method: r["distances"] for method, r in results.items()},
            "features": features, "feature_file": feature_file, "record": record,
            "protocol": protocol, "table": table, "work_dir": work_dir, "seconds": seconds}
