"""What the readers with paper-defined splits share: split names, seeded identity partitions, and the check of a
full download against its official protocol numbers.

Split names are `"<subset>"` or `"<subset>/<index>"` (e.g. CUHK01 `"486/3"`, VehicleID `"800/7"`, CUHK03
`"classic/12"`); a bare `"<subset>"` means index 0.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from data.record import DatasetError, Sample


def split_parts(dataset: str, split: str, valid: Sequence[str]) -> tuple[str, int]:
    """`"800/3"` -> `("800", 3)`, `"800"` -> `("800", 0)`; anything else raises `unknown_split`."""
    subset, sep, index = str(split).partition("/")
    if not subset or (sep and not index.isdigit()):
        raise unknown_split(dataset, split, valid)
    return subset, int(index) if sep else 0


def unknown_split(dataset: str, split, valid: Iterable[str]) -> DatasetError:
    """The error for a split name a reader does not know, listing the names it does."""
    return DatasetError(f"{dataset}: unknown split {split!r}; valid splits: {', '.join(valid)}")


def identity_partition(pids: Iterable[int], sizes: Sequence[int], seed: int, where: str) -> list[list[int]]:
    """Shuffle the identities with `seed` and cut them into consecutive groups of `sizes`, plus the remainder.

    The order before shuffling is sorted, so a seed names the same partition on every machine
    (`numpy.random.default_rng(seed).permutation`). Raises a DatasetError naming `where` if there are fewer
    identities than `sum(sizes)`.
    """
    pool = sorted(set(pids))
    if sum(sizes) > len(pool):
        raise DatasetError(f"{where}: the split needs {' + '.join(map(str, sizes))} identities, "
                           f"found only {len(pool)}")
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    groups, start = [], 0
    for size in sizes:
        groups.append(sorted(order[start:start + size]))
        start += size
    groups.append(sorted(order[start:]))
    return groups


def check_official(where: str, samples: Sequence[Sample], official: Mapping[str, int],
                   check_counts: bool | None = None) -> None:
    """Compare one list with the official release's numbers (`official`: "ids", "images" and maybe "cameras").

    `check_counts=None` checks only a list that holds the official number of identities, i.e. looks complete, so
    that tiny or partial copies still load while a complete download with missing or extra images is caught;
    True always checks; False never does. (The Market-style readers' `check_counts` means the same; their
    automatic check keys on the image count instead, which a list-based dataset cannot use to spot lost images.)
    A mismatch is a DatasetError naming `where` (a folder or list file) and both numbers.
    """
    if check_counts is False:
        return
    found = {"ids": len({s.pid for s in samples}), "images": len(samples), "cameras": len({s.camid for s in samples})}
    if check_counts is None and found["ids"] != official["ids"]:
        return
    wrong = [f"{found[key]:,} {key} (official: {official[key]:,})"
             for key in ("ids", "images", "cameras") if key in official and found[key] != official[key]]
    if wrong:
        raise DatasetError(f"{where}: {', '.join(wrong)}; the download looks incomplete or modified "
                           "(pass check_counts=False to read a modified copy)")
