"""The synthetic dataset (`data.synthetic`) as a registry dataset: generated into `root` on first use, then read
with the Market-1501 reader's naming and layout (without Market-1501's official counts and camera number).

`data.datasets.load("synthetic", root, **params)`: `root` None or "" means `data.synthetic.default_root(params)`;
`params` are `data.synthetic.SyntheticConfig` fields plus `overwrite`, `progress` and `checksums` (see
`data.synthetic.generate`). A root generated with other parameters, or whose images no longer match the manifest in
its synthetic.json (a file deleted, added or changed), is an error unless `overwrite=True`; with no `params` at all,
an existing synthetic root is read as it was generated (so `--data_root` can name one made by
`python -m data.synthetic`), after the same check.
"""
from __future__ import annotations

import dataclasses
import os

from data import synthetic
from data.datasets import market1501, reid_layout
from data.record import Record

NAME = "synthetic"
OPTIONS = synthetic.SyntheticConfig  # what **params of `load` are: --dataset_option types them (engine.cli)


def load(root: str | None = None, split: str | None = None, *, overwrite: bool = False, progress: bool = True,
         checksums: bool = True, **params) -> Record:
    """Generate the synthetic dataset into `root` unless it is there already (checked against its manifest), and
    read it."""
    reid_layout.require_single_split(NAME, split)
    if not params and not overwrite and root and os.path.isfile(os.path.join(root, synthetic.METADATA_FILE)):
        params = dataclasses.asdict(synthetic.read_config(root))  # read as generated, after the manifest check
    root = synthetic.generate(root or None, overwrite=overwrite, progress=progress, checksums=checksums, **params)
    config = synthetic.read_config(root)
    naming = dataclasses.replace(market1501.NAMING, num_cameras=config.num_cameras, max_pid=None)
    dataset = reid_layout.MarketStyleDataset(name=NAME, title="synthetic dataset", folder_names=(), naming=naming)
    return dataset.load(root)


eval_splits = reid_layout.fixed_split
