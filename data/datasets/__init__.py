"""One name per dataset, usable from every binary (`--dataset=NAME --data_root=DIR --split=SPLIT`).

Each reader is a small module in this package exposing
  `load(root: str, split: str | None = None, **options) -> data.record.Record`
  `eval_splits(**options) -> tuple[str | None, ...]`: the splits a paper-protocol evaluation averages over
      (`(None,)` where the dataset has one fixed split), in the order they are averaged; `options` are the
      same keyword options `load` takes (e.g. CUHK03's `protocol`).
Modules are imported on first use so that a reader's optional dependency (h5py for CUHK03) costs nothing to
users of the others.
"""
from __future__ import annotations

import importlib

from data.record import DatasetError, Record

_MODULES = {
    "synthetic": "data.datasets.synthetic",
    "market1501": "data.datasets.market1501",
    "dukemtmcreid": "data.datasets.dukemtmcreid",
    "msmt17": "data.datasets.msmt17",
    "cuhk03_labeled": "data.datasets.cuhk03",
    "cuhk03_detected": "data.datasets.cuhk03",
    "cuhk01": "data.datasets.cuhk01",
    "veri776": "data.datasets.veri776",
    "vehicleid": "data.datasets.vehicleid",
    "veriwild": "data.datasets.veriwild",
}


def names() -> tuple[str, ...]:
    """Every dataset name a binary accepts."""
    return tuple(_MODULES)


def _module(name: str):
    if name not in _MODULES:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name])


def _options(name: str, options: dict) -> dict:
    if name.startswith("cuhk03_"):
        options.setdefault("variant", name.split("_", 1)[1])
    return options


def load(name: str, root: str, split: str | None = None, **options) -> Record:
    """Read dataset `name` from its official layout under `root` and return the record of `split`."""
    return _module(name).load(root, split=split, **_options(name, options))


def eval_splits(name: str, **options) -> tuple[str | None, ...]:
    """The splits whose results a paper-protocol evaluation of `name` averages (one `None` for fixed splits)."""
    return tuple(_module(name).eval_splits(**_options(name, options)))
