"""The ACP part of the README's demo: the re-ID baseline (`acp.baseline`) trained briefly on the synthetic dataset,
its features extracted, ACP trained briefly on the training features, and the baseline against AQE, alpha-QE,
k-reciprocal and ACP re-ranking, printed as one table (mAP, rank-1, seconds).

    from acp.demo import run_demo
    run_demo()                                      # synthetic dataset at data.synthetic.DEFAULT_ROOT

Sized for two CPU cores and a few minutes, which sets hard limits (no pretrained weights can be downloaded here):
- the baseline is `acp.baseline`'s ResNet with one bottleneck per stage instead of ResNet-50's (3, 4, 6, 3)
  (`DemoConfig.blocks=None` restores ResNet-50), on 64 x 32 inputs, trained from random weights for 14 short
  epochs at a raised learning rate. Measured here: ResNet-50 itself stays at chance (mAP 2.2%, rank-1 0.7%) after
  the 28 steps the budget allows, while the small ResNet reaches mAP 9-23% in 100-150 steps;
- ACP is reduced likewise (one encoder layer, d = 64, 4 heads, d_m = 16, no fusion dropout) so that it can see
  five epochs of sequences.
The numbers show the pipeline end to end, not the paper's accuracy. Re-ranking pays off when most of an image's
k1 nearest neighbours are correct matches (the paper's baselines have rank-1 74-96%); a baseline this weak is far
from that, and every re-ranker, ACP included, may then lower mAP. Every stage keeps its output in `work_dir`
(baseline and ACP checkpoints, the feature file): a second run resumes or reuses them.

Re-ranking parameters follow ACP Table IV: every method's first-order neighbourhood (AQE and alpha-QE k,
k-reciprocal k1, ACP k1) is N/C of the gallery; alpha = 3, k-reciprocal k2 = 6 and lambda = 0.3, ACP k2 = 6.
"""
from __future__ import annotations

import dataclasses
import os
import time

import tensorflow as tf

from acp import baseline, training
from acp import features as feature_files
from acp import model as acp_model
from acp import rerank_runner
from data import datasets, synthetic
from engine import distribute
from engine.seed import set_seed
from engine.train_loop import LoopConfig

DEMO_METHODS = ("none", "aqe", "alpha_qe", "k_reciprocal", "acp")
METHOD_TITLES = {"none": "baseline", "aqe": "AQE", "alpha_qe": "alpha-QE", "k_reciprocal": "k-reciprocal",
                 "acp": "ACP"}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """How long and how large the demo's two trainings are."""

    image_size: tuple[int, int] = (64, 32)
    blocks: tuple[int, ...] | None = (1, 1, 1, 1)  # bottlenecks per stage; None: ResNet-50's (3, 4, 6, 3)
    baseline_recipe: baseline.Recipe = baseline.Recipe(num_identities=8, num_instances=4, epochs=14,
                                                       learning_rate=1e-3, warmup_epochs=0, decay_epochs=())
    acp_preset: str = "basic"
    acp_overrides: tuple[tuple[str, object], ...] = (("num_layers", 1), ("model_dim", 64), ("num_heads", 4),
                                                     ("memory_dim", 16), ("fusion_dropout", 0.0))
    acp_recipe: training.Recipe = training.Recipe(learning_rate=1e-3, epochs=5, warmup_epochs=0.5)
    seed: int = 0


def _features_are_current(feature_file: str, baseline_dir: str) -> bool:
    """Whether `feature_file` was written after the baseline's latest checkpoint (so extraction can be skipped)."""
    latest = tf.train.latest_checkpoint(baseline_dir)
    return (latest is not None and os.path.isfile(feature_file)
            and os.path.getmtime(feature_file) >= os.path.getmtime(latest + ".index"))


def train_and_extract(record, work_dir: str, config: DemoConfig, strategy, verbose: int) -> str:
    """Train the baseline on `record.train` (resumably) and write the feature file of all three subsets."""
    # acp.extract is a binary module whose import declares its absl flags; importing it here, when the demo runs,
    # keeps a program that imports acp.demo free to declare flags of the same names first.
    from acp import extract

    baseline_dir = os.path.join(work_dir, "baseline")
    model_config = baseline.ModelConfig(num_classes=record.num_train_pids, image_size=config.image_size,
                                        blocks=config.blocks)
    set_seed(config.seed)
    result = baseline.train(record, model_config, config.baseline_recipe,
                            LoopConfig(baseline_dir, 0, checkpoint_every=10_000, log_every=10,
                                       show_progress=bool(verbose)), strategy, seed=config.seed)
    feature_file = os.path.join(work_dir, "features.npz")
    if not _features_are_current(feature_file, baseline_dir):
        extract.extract(result["model"], model_config, record, feature_file,
                        checkpoint=tf.train.latest_checkpoint(baseline_dir), show_progress=bool(verbose),
                        overwrite=True)
    return feature_file


def train_acp(features: feature_files.FeatureSet, work_dir: str, config: DemoConfig, strategy, verbose: int):
    set_seed(config.seed)
    acp_config = acp_model.make_config(config.acp_preset, **dict(config.acp_overrides))
    result = training.train(features, LoopConfig(os.path.join(work_dir, "acp"), 0, checkpoint_every=10_000,
                                                 log_every=10, show_progress=bool(verbose)),
                            config.acp_preset, acp_config, config.acp_recipe, strategy, seed=config.seed,
                            verbose=verbose)
    return result["model"]


def compare(features: feature_files.FeatureSet, model, methods=DEMO_METHODS, verbose: int = 0) -> list[dict]:
    """Each method's outcome (`rerank_runner.evaluate_method`) with Table IV's neighbourhoods."""
    return [rerank_runner.evaluate_method(features, method, model=model if method == "acp" else None,
                                          table_iv_neighbourhood=True, verbose=verbose) for method in methods]


def format_table(outcomes: list[dict]) -> str:
    lines = [f"{'method':<14}{'mAP':>8}{'rank-1':>9}{'seconds':>9}  parameters"]
    for outcome in outcomes:
        lines.append(f"{METHOD_TITLES.get(outcome['method'], outcome['method']):<14}{100 * outcome['mAP']:>7.1f}%"
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
    Returns {"record", "feature_file", "outcomes" (one dict per method), "table", "seconds"}.
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
    outcomes = compare(features, model)
    table = format_table(outcomes)
    seconds = time.perf_counter() - start
    print_fn(f"\nRe-ranking the briefly trained baseline's features ({len(features.query)} queries x "
             f"{len(features.gallery)} gallery, protocol {outcomes[0]['protocol']}):\n{table}\n"
             f"(ACP demo in {seconds:.0f} s; work files in {work_dir})")
    return {"record": record, "feature_file": feature_file, "outcomes": outcomes, "table": table,
            "seconds": seconds}

