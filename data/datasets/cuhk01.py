"""CUHK01 (Li, Zhao, Wang, ACCV 2012) with the two protocols of KVM-MN (Table 2: 871/100 and 485/486 train/test
identities, 10 random splits each, single-shot CMC averaged over the splits).

Layout (ROOT, or `ROOT/cuhk01` / `ROOT/CUHK01`): `campus/NNNNKKK.png`, NNNN the identity (0001-0971) and KKK
the image: 001-002 are camera A, 003-004 camera B; every identity needs images from both cameras. The official
release has 971 identities x 4 images = 3,884 images from 2 cameras; a folder with all 971 identities is checked
to hold exactly that (`check_counts`: see `data.datasets.splits.check_official`).

Splits `"<T>/<i>"` with T the number of test identities (100 or 486 in the paper, any T below the number of
identities for smaller copies) and i < `num_splits` the split index, which is the seed of the identity shuffle
(`data.datasets.splits.identity_partition`); a bare `"<T>"` is `"<T>/0"`.
`eval_splits(test_ids=T, num_splits=10)` gives `"<T>/0"` .. `"<T>/9"`.

Single shot (our reading of "probe from one camera, gallery from the other"): the query holds the camera-A images
of the test identities, the gallery their camera-B images (camid 0 and 1), and the `single_shot` protocol of
`data.evaluation` draws one gallery image per identity per trial. Train pids are relabelled 0..P-1.
"""
from __future__ import annotations

import os
import re

from data.datasets.common import list_images
from data.datasets.reid_layout import find_dataset_dir
from data.datasets.splits import check_official, identity_partition, split_parts, unknown_split
from data.record import DatasetError, Record, Sample, relabel

NAME = "cuhk01"
FOLDER_NAMES = ("cuhk01", "CUHK01")
OFFICIAL = {"ids": 971, "images": 3884, "cameras": 2}
PAPER_TEST_IDS = (100, 486)
_FILE = re.compile(r"^(\d{4})(\d{3})\.png$", re.IGNORECASE)


def read_campus(root: str, check_counts: bool | None = None) -> tuple[Sample, ...]:
    """Every image of `campus/` as Sample(path, identity NNNN, camera 0 for KKK 1-2 or 1 for KKK 3-4)."""
    dataset_dir = find_dataset_dir(os.path.abspath(root), FOLDER_NAMES,
                                   lambda path: os.path.isdir(os.path.join(path, "campus")), "CUHK01")
    folder = os.path.join(dataset_dir, "campus")
    samples = []
    for name in list_images(folder):
        match = _FILE.match(name)
        if not match or not 1 <= int(match.group(2)) <= 4:
            raise DatasetError(f"{os.path.join(folder, name)}: expected a CUHK01 name NNNNKKK.png with KKK in 001-004")
        samples.append(Sample(os.path.join(folder, name), int(match.group(1)), (int(match.group(2)) - 1) // 2))
    if not samples:
        raise DatasetError(f"{folder}: no CUHK01 images (NNNNKKK.png)")
    cameras = {}
    for s in samples:
        cameras.setdefault(s.pid, set()).add(s.camid)
    one_view = sorted(pid for pid, cams in cameras.items() if len(cams) < 2)
    if one_view:
        raise DatasetError(f"{folder}: identities {one_view[:10]} have images from one camera only; CUHK01 needs "
                           "images 001-002 (camera A) and 003-004 (camera B) of every identity")
    check_official(folder, samples, OFFICIAL, check_counts)
    return tuple(samples)


def eval_splits(test_ids: int | None = None, num_splits: int = 10, **_) -> tuple[str, ...]:
    """The `num_splits` seeded splits of the protocol with `test_ids` test identities (default 100); the other
    options of `load` are accepted and play no part."""
    return tuple(f"{test_ids or PAPER_TEST_IDS[0]}/{i}" for i in range(num_splits))


def load(root: str, split: str | None = None, test_ids: int | None = None, num_splits: int = 10,
         check_counts: bool | None = None) -> Record:
    """Read CUHK01 under `root` and return the split `split` (see the module docstring)."""
    valid = [f"{t}/0..{t}/{num_splits - 1}" for t in PAPER_TEST_IDS] + ["T/i for other numbers T of test identities"]
    subset, seed = split_parts(NAME, split if split is not None else f"{test_ids or PAPER_TEST_IDS[0]}", valid)
    if not subset.isdigit() or int(subset) < 1 or seed >= num_splits:
        raise unknown_split(NAME, split, valid)
    if test_ids is not None and int(subset) != test_ids:
        raise DatasetError(f"{NAME}: split {split!r} has {subset} test identities but test_ids={test_ids}")
    samples = read_campus(root, check_counts)
    test, train = identity_partition((s.pid for s in samples), [int(subset)], seed,
                                     os.path.dirname(samples[0].path))
    if not train:
        raise DatasetError(f"{NAME}: split {split!r} leaves no training identities in {root}")
    test = set(test)
    return Record(
        name=NAME,
        train=relabel([s for s in samples if s.pid not in test]),
        query=[s for s in samples if s.pid in test and s.camid == 0],
        gallery=[s for s in samples if s.pid in test and s.camid == 1],
        protocol="single_shot",
        split=f"{subset}/{seed}",
    )
