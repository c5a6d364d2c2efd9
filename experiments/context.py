"""What every row runner needs to know about the run: the scale, where the data and the pretrained weights are,
where intermediate work (trained models, feature files) goes, and the models already loaded in this process.

Scales:
- "paper": each row on its own dataset, with the paper's training recipe (GPU hours to days per row; see
  WORKSPACE.md for estimates).
- "smoke": every dataset is replaced by the synthetic dataset (`data.synthetic`, generated on first use) and
  every training run takes a handful of steps of a tiny model on the CPU; it checks that a table runs end to end,
  and its numbers mean nothing against the paper's.

Work directory (default `<results_dir>/work/<scale>`): `baseline/<dataset>/` (the ResNet-50 re-ID baselines),
`features/` (feature files, `experiments.runners.feature_files`), `acp/<dataset>/<variant>/` (ACP models),
`kvmmn/<run>/` (KVM-MN runs). Everything there resumes: a killed run continues from its checkpoints.
"""
from __future__ import annotations

import dataclasses
import os

from data import datasets
from experiments.tables import DataSpec

SCALES = ("smoke", "paper")
SYNTHETIC = DataSpec("synthetic", "synthetic", title="synthetic dataset")


@dataclasses.dataclass
class Context:
    """Settings of one `experiments.run` invocation (see the module docstring).

    data_root: the folder holding the datasets, each under its usual folder name (e.g. /data with
      /data/Market-1501-v15.09.15, /data/VERI-Wild, ...), or one dataset's own folder; at smoke scale, where the
      synthetic dataset is generated (None: its default cache folder).
    features_dir: feature files to use, and where missing ones are written (default `<work_dir>/features`).
    inception_checkpoint: TF-slim inception_v1.ckpt for KVM-MN (paper scale). resnet_weights: Keras ImageNet
      ResNet-50 weights (no top) for the re-ID baseline (paper scale).
    strategy: `engine.distribute` strategy of every training run. max_splits: evaluate only the first N splits of
      multi-split protocols (CUHK's 10 splits, VehicleID's 10 galleries). verbose: progress bars and logs.
    synthetic_options: `data.synthetic.SyntheticConfig` fields of the smoke scale's synthetic dataset (e.g. fewer
      identities); empty: its defaults.
    seed: the seed of every training run (samplers, augmentation, initial weights, dropout) and of the global
      generators before each row (`experiments.run.run_table`), recorded in each row's `info`: two runs with one
      seed give the same table, and a resumed run the same rows as an uninterrupted one.
    """

    scale: str
    results_dir: str = "results"
    data_root: str | None = None
    work_dir: str | None = None
    features_dir: str | None = None
    inception_checkpoint: str | None = None
    resnet_weights: str | None = None
    strategy: str = "one_device"
    max_splits: int | None = None
    verbose: int = 1
    synthetic_options: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    loaded: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r}: choose one of {', '.join(SCALES)}")
        if self.max_splits is not None and self.max_splits < 1:
            raise ValueError(f"max_splits={self.max_splits} must be >= 1 (or None for every split)")
        self.work_dir = self.work_dir or os.path.join(self.results_dir, "work", self.scale)
        self.features_dir = self.features_dir or os.path.join(self.work_dir, "features")

    @property
    def smoke(self) -> bool:
        return self.scale == "smoke"

    def data(self, spec: DataSpec) -> DataSpec:
        """The evaluation set a row runs on: `spec`, or the synthetic dataset at smoke scale."""
        if self.smoke and spec.needs_data:
            return dataclasses.replace(SYNTHETIC, options=dict(self.synthetic_options))
        return spec

    def describe(self, spec: DataSpec) -> str:
        """The `data` column of the results: what the row ran on."""
        if not spec.needs_data:
            return spec.title
        if self.smoke:
            return f"synthetic (stand-in for {spec.title or spec.label})"
        return spec.title or spec.label

    def splits(self, spec: DataSpec) -> tuple:
        """The evaluation splits of `spec` (after `data`), at most `max_splits` of them."""
        spec = self.data(spec)
        splits = spec.splits or datasets.eval_splits(spec.dataset, **spec.options)
        return tuple(splits[:self.max_splits] if self.max_splits else splits)

    def root(self, dataset: str) -> str:
        """The `root` argument of `data.datasets.load` for `dataset`."""
        if dataset == SYNTHETIC.dataset:
            return self.data_root or ""
        if not self.data_root:
            raise ValueError(f"dataset {dataset!r} needs --data_root (the folder holding it under its usual name)")
        return self.data_root

    def load(self, spec: DataSpec, split=None):
        """The `data.record.Record` of `spec` (after `data`) and `split`."""
        spec = self.data(spec)
        options = dict(spec.options)
        if spec.dataset == SYNTHETIC.dataset:
            options["progress"] = bool(self.verbose)
        return datasets.load(spec.dataset, self.root(spec.dataset), split=split, **options)

    def work(self, *parts: str) -> str:
        return os.path.join(self.work_dir, *parts)
