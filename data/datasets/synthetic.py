"""The synthetic dataset (`data.synthetic`) as a registry dataset: generated into `root` on first use, then read
with the Market-1501 reader's naming and layout (without Market-1501's official counts and camera number).

`data.datasets.load("synthetic", root, **params)`: `root` None or "" means `data.synthetic.default_root(params)`;
`params` are `data.synthetic.SyntheticConfig` fields plus `overwrite` and `progress` (see `data.synthetic.generate`).
A root generated with other parameters is an error unless `overwrite=True`; with no `params` at all, an existing
synthetic root is read as it was generated (so `--data_root` can name one made by `python -m data.synthetic`).
"""
from __future__ import annotations

import dataclasses
import os

from data import synthetic
from data.datasets import market1501, reid_layout
from data.record import Record

NAME = "synthetic"


def load(root: str | None = None, split: str | None = None, *, overwrite: bool = False, progress: bool = True,
         **params) -> Record:
    """Generate the synthetic dataset into `root` unless it is there already, and read it."""
    reid_layout.require_single_split(NAME, split)
    existing = root and os.path.isfile(os.path.join(root, synthetic.METADATA_FILE))
    if params or overwrite or not existing:
        root = synthetic.generate(root or None, overwrite=overwrite, progress=progress, **params)
    config = synthetic.read_config(root)
    naming = dataclasses.replace(market1501.NAMING, num_cameras=config.num_cameras, max_pid=None)
    dataset = reid_layout.MarketStyleDataset(name=NAME, title="synthetic dataset", folder_names=(), naming=naming)
    return dataset.load(root)


eval_splits = reid_layout.fixed_split
