"""One name per dataset, usable from every binary (`--dataset=NAME --data_root=DIR --split=SPLIT`).

Each reader is a small module in this package exposing
  `load(root: str, split: str | None = None, **options) -> data.record.Record`
  `eval_splits(**options) -> tuple[str | None, ...]`: the splits a paper-protocol evaluation averages over
      (`(None,)` where the dataset has one fixed split), in the order they are averaged; `options` are the
      same keyword options `load` takes (e.g. CUHK03's `protocol`).
Modules are imported on first use so that a reader's optional dependency (h5py for CUHK03) costs nothing to
users of the others.

Your own reader joins every binary's `--dataset` with `register(name, reader)` (WORKSPACE.md has an example);
for a folder of list files there is the `csv` dataset (`data.datasets.csv_lists`).
"""
from __future__ import annotations

import importlib
import types
from typing import Callable

from data.datasets.common import fixed_split
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
    "csv": "data.datasets.csv_lists",
}
_REGISTERED: dict[str, object] = {}


def register(name: str, reader, eval_splits: Callable | None = None, overwrite: bool = False) -> None:
    """Make `name` a dataset every binary and `load` accept.

    Args:
      name: the `--dataset` name.
      reader: a module or object with `load(root, split=None, **options) -> Record` (and optionally
        `eval_splits(**options)`), or that `load` function itself.
      eval_splits: the splits a protocol evaluation averages over; default the reader's, else one fixed split.
      overwrite: replace an earlier registration of `name` (a built-in dataset is never replaced).
    Raises ValueError for a name already taken or a reader without `load`.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"register: the dataset name must be a non-empty string, got {name!r}")
    if name in _MODULES or (name in _REGISTERED and not overwrite):
        raise ValueError(f"register: dataset {name!r} is already {'built in' if name in _MODULES else 'registered'}"
                         + ("" if name in _MODULES else "; pass overwrite=True to replace it"))
    load_fn = getattr(reader, "load", reader)
    if not callable(load_fn):
        raise ValueError(f"register({name!r}): the reader needs a load(root, split=None, **options) function")
    splits_fn = eval_splits or getattr(reader, "eval_splits", None) or fixed_split
    _REGISTERED[name] = types.SimpleNamespace(load=load_fn, eval_splits=splits_fn)


def names() -> tuple[str, ...]:
    """Every dataset name a binary accepts: the built-in ones, then the registered ones."""
    return tuple(_MODULES) + tuple(_REGISTERED)


def _module(name: str):
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _MODULES:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
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
