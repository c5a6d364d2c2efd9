"""Writing the synthetic dataset: which identity is seen by which camera how often, the Market-1501 folders and
names, the atomic write and the metadata file that records how a root was generated and which files it holds.

Split: identities come in look-alike groups (`data.synthetic.people`); whole groups go to train or test, so test
queries meet their own look-alikes in the gallery. Test images of each (identity, camera) give
`queries_per_camera` queries, the rest go to the gallery; distractors (pid 0) and junk (pid -1) are added to the
gallery the way Market-1501 has them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import zlib
from typing import Iterator

import cv2
import numpy as np

from data.record import DatasetError
from data.synthetic import people, render
from engine import atomic, faults
from engine.progress import Progress

GENERATOR = "data.synthetic"
GENERATOR_VERSION = 2  # 2: look-alikes keep their prototype's colours (data.synthetic.people)
METADATA_FILE = "synthetic.json"
DEFAULT_ROOT = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "reid-kvmmn-acp", f"synthetic-v{GENERATOR_VERSION}")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated images (two equal configs give identical datasets).

    Attributes:
      num_identities: people with images (about half train, half test, in whole look-alike groups).
      num_cameras: cameras of the scene (Market-1501 has 6).
      min_cameras: each identity is seen by at least this many cameras (and at most `num_cameras`).
      min_images_per_camera, max_images_per_camera: images per (identity, camera), inclusive.
      queries_per_camera: test images of each (identity, camera) that become queries.
      group_size: identities per look-alike group.
      num_distractors: gallery images of people outside the dataset (pid 0).
      num_junk: gallery images of bad detections (pid -1, dropped by the reader).
      height, width: image size in pixels (Market-1501 crops are 128 x 64).
      seed: the one seed everything is drawn from.
      jpeg_quality: JPEG quality of the written files.
    """

    num_identities: int = 240
    num_cameras: int = 6
    min_cameras: int = 4
    min_images_per_camera: int = 2
    max_images_per_camera: int = 4
    queries_per_camera: int = 1
    group_size: int = 6
    num_distractors: int = 24
    num_junk: int = 8
    height: int = 128
    width: int = 64
    seed: int = 0
    jpeg_quality: int = 92

    def __post_init__(self):
        checks = [
            ("num_identities", 2 <= self.num_identities <= 9999, "be in 2..9999"),
            ("num_cameras", 1 <= self.num_cameras <= 9, "be in 1..9 (one digit in Market-1501 names)"),
            ("min_cameras", 1 <= self.min_cameras <= self.num_cameras, "be in 1..num_cameras"),
            ("queries_per_camera", self.queries_per_camera >= 1, "be at least 1"),
            ("min_images_per_camera", self.min_images_per_camera > self.queries_per_camera,
             "exceed queries_per_camera, so that every camera also has gallery images"),
            ("max_images_per_camera", self.max_images_per_camera >= self.min_images_per_camera,
             "be at least min_images_per_camera"),
            ("group_size", 1 <= self.group_size < self.num_identities,
             "be in 1..num_identities-1 (train and test need a look-alike group each)"),
            ("num_distractors", self.num_distractors >= 0, "be non-negative"),
            ("num_junk", self.num_junk >= 0, "be non-negative"),
            ("height", self.height >= 16, "be at least 16"),
            ("width", self.width >= 8, "be at least 8"),
            ("seed", self.seed >= 0, "be non-negative"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "be in 1..100"),
        ]
        for field, ok, requirement in checks:
            if not ok:
                raise ValueError(f"synthetic dataset: {field}={getattr(self, field)!r} must {requirement}")


@dataclasses.dataclass(frozen=True)
class _Image:
    subset: str
    pid: int
    camera: int       # 0-based
    kind: str         # "identity", "distractor" or "junk"
    key: tuple        # seeds this image's randomness


def make_config(**params) -> SyntheticConfig:
    """A SyntheticConfig from keyword parameters; an unknown name is a ValueError naming it."""
    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown synthetic dataset parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return SyntheticConfig(**params)


def _rng(config: SyntheticConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *key])


def look_alike_groups(config: SyntheticConfig) -> list[list[int]]:
    """Pids (1-based) of each look-alike group, in order."""
    pids = list(range(1, config.num_identities + 1))
    return [pids[i: i + config.group_size] for i in range(0, len(pids), config.group_size)]


def split_groups(groups: list[list[int]]) -> tuple[list[int], list[int]]:
    """Train and test pids: whole groups, the first ones to train until it holds at least half of the identities,
    but never all groups."""
    total = sum(len(g) for g in groups)
    train: list[int] = []
    for index, group in enumerate(groups):
        if len(train) * 2 >= total or index == len(groups) - 1:
            return train, [pid for g in groups[index:] for pid in g]
        train.extend(group)
    raise AssertionError("unreachable: the loop returns at the last group")


def make_people(config: SyntheticConfig) -> dict[int, people.Person]:
    """The identities: each group's first member is its prototype, the others are its look-alikes."""
    persons = {}
    for index, group in enumerate(look_alike_groups(config)):
        prototype = people.random_person(_rng(config, 1, index))
        persons[group[0]] = prototype
        for pid in group[1:]:
            persons[pid] = people.look_alike(prototype, _rng(config, 2, pid))
    return persons


def _plan(config: SyntheticConfig, train_pids: list[int]) -> Iterator[_Image]:
    train = set(train_pids)
    for pid in range(1, config.num_identities + 1):
        rng = _rng(config, 3, pid)
        num_cameras = int(rng.integers(config.min_cameras, config.num_cameras + 1))
        for camera in sorted(rng.choice(config.num_cameras, size=num_cameras, replace=False).tolist()):
            count = int(rng.integers(config.min_images_per_camera, config.max_images_per_camera + 1))
            for shot in range(count):
                subset = "train" if pid in train else ("query" if shot < config.queries_per_camera else "gallery")
                yield _Image(subset, pid, camera, "identity", (pid, camera, shot))
    for index in range(config.num_distractors):
        yield _Image("gallery", 0, int(_rng(config, 4, index).integers(config.num_cameras)), "distractor", (index,))
    for index in range(config.num_junk):
        yield _Image("gallery", -1, int(_rng(config, 5, index).integers(config.num_cameras)), "junk", (index,))


def market_name(pid: int, camera: int, frame: int) -> str:
    """A Market-1501 file name `PPPP_cCs1_FFFFFF_01.jpg` (junk: `-1_c...`) for a 0-based camera."""
    return f"{'-1' if pid < 0 else f'{pid:04d}'}_c{camera + 1}s1_{frame:06d}_01.jpg"


def _render(config: SyntheticConfig, image: _Image, persons, cameras, tracks) -> np.ndarray:
    camera = cameras[image.camera]
    if image.kind == "identity":
        pid, cam, shot = image.key
        rng = _rng(config, 6, pid, cam, shot)
        return render.render(persons[pid], camera, tracks[pid, cam], rng, config.height, config.width)
    stream = 7 if image.kind == "distractor" else 8
    rng = _rng(config, stream, *image.key)
    person = people.random_person(rng)
    if image.kind == "junk":
        return render.render_junk(person, camera, rng, config.height, config.width)
    return render.render(person, camera, render.random_track(camera, rng), rng, config.height, config.width)


def _write_images(folder: str, config: SyntheticConfig, progress: bool) -> dict:
    groups = look_alike_groups(config)
    train_pids, test_pids = split_groups(groups)
    persons = make_people(config)
    cameras = [people.random_camera(_rng(config, 9, c)) for c in range(config.num_cameras)]
    plan = list(_plan(config, train_pids))
    tracks = {(im.pid, im.camera): render.random_track(cameras[im.camera], _rng(config, 10, im.pid, im.camera))
              for im in plan if im.kind == "identity"}
    for name in FOLDERS.values():
        os.makedirs(os.path.join(folder, name))
    bar = Progress(len(plan), unit="images", stream=sys.stderr) if progress else None  # throttles itself
    frames = [0] * config.num_cameras
    counts = {subset: 0 for subset in FOLDERS}
    files = {}
    for step, image in enumerate(plan, start=1):
        frames[image.camera] += 1
        name = f"{FOLDERS[image.subset]}/{market_name(image.pid, image.camera, frames[image.camera] * 25)}"
        pixels = _render(config, image, persons, cameras, tracks)
        ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise DatasetError(f"{os.path.join(folder, name)}: JPEG encoding failed")
        encoded.tofile(os.path.join(folder, name))
        files[name] = [int(encoded.size), zlib.crc32(encoded)]
        counts[image.subset] += 1
        if bar is not None:
            bar.update(step)
    return {"groups": groups, "train_pids": train_pids, "test_pids": test_pids, "images": counts, "files": files}


def read_metadata(root: str) -> dict | None:
    """The metadata of a generated root, or None where `root` holds none."""
    path = os.path.join(root, METADATA_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: unreadable synthetic dataset metadata: {error}") from None


def read_config(root: str) -> SyntheticConfig:
    """The configuration a root was generated with; DatasetError if `root` is not a generated dataset."""
    metadata = read_metadata(root)
    if metadata is None or metadata.get("generator") != GENERATOR:
        raise DatasetError(f"{root}: not a synthetic dataset (no {METADATA_FILE} written by {GENERATOR})")
    try:
        return make_config(**metadata["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{os.path.join(root, METADATA_FILE)}: bad config: {error}") from None


def _differences(metadata: dict, config: SyntheticConfig) -> list[str]:
    wanted = {"version": GENERATOR_VERSION, **dataclasses.asdict(config)}
    found = {"version": metadata.get("version"), **(metadata.get("config") or {})}
    return [f"{key} {found.get(key)!r} != {value!r}" for key, value in wanted.items() if found.get(key) != value]


def manifest_mismatch(root: str, checksums: bool = True) -> str | None:
    """None if the image folders of a generated `root` hold exactly the files of its manifest (`files` in
    synthetic.json: name -> [size, CRC-32]), else a message naming the first file (in sorted order) that is missing,
    added, of another size or (with `checksums`) of other content.

    A root whose images were deleted or edited after generation would otherwise be reused as the dataset of its
    parameters. Cost for the default dataset (3,698 images, 11 MB), measured on the development machine: 65 ms for
    names and sizes (reading the manifest included), 0.18 s with the checksums from the page cache, 0.5 s from a cold
    disk.
    """
    manifest = (read_metadata(root) or {}).get("files")
    if not isinstance(manifest, dict):
        return f"{os.path.join(root, METADATA_FILE)}: records no file manifest"
    found = {}
    for folder in FOLDERS.values():
        if not os.path.isdir(os.path.join(root, folder)):
            return f"{os.path.join(root, folder)}: missing image folder of a generated dataset"
        with os.scandir(os.path.join(root, folder)) as entries:
            found.update((f"{folder}/{entry.name}", entry) for entry in entries)
    for name in sorted(set(manifest) | set(found)):
        path = os.path.join(root, name)
        if name not in found:
            return f"{path}: missing (the manifest in {METADATA_FILE} lists it)"
        if name not in manifest:
            return f"{path}: not written by the generator (the manifest in {METADATA_FILE} does not list it)"
        entry = manifest[name]
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, int) for v in entry)):
            return f"{os.path.join(root, METADATA_FILE)}: malformed manifest entry for {name}: {entry!r}"
        size, crc = entry
        if not found[name].is_file() or found[name].stat().st_size != size:
            return f"{path}: not the {size}-byte file the manifest in {METADATA_FILE} records"
        if checksums:
            with open(path, "rb") as f:
                if zlib.crc32(f.read()) != crc:
                    return f"{path}: its content differs from the manifest in {METADATA_FILE} (CRC-32)"
    return None


def _state(root: str, config: SyntheticConfig, checksums: bool = True) -> tuple[str, str | None]:
    """(state, why): "absent"; "current" (generated with `config`, matching its manifest); "stale" (generated with
    other parameters); "damaged" (generated with `config` but no longer matching its manifest: `why` is
    `manifest_mismatch`'s message); "unverified" (generated with `config` before manifests were recorded).
    DatasetError if `root` holds anything else."""
    if not os.path.exists(root) or (os.path.isdir(root) and not os.listdir(root)):
        return "absent", None
    metadata = read_metadata(root) if os.path.isdir(root) else None
    if metadata is None or metadata.get("generator") != GENERATOR:
        raise DatasetError(f"{root}: exists and is not a synthetic dataset (no {METADATA_FILE}); refusing to write "
                           "there, pass another root")
    differences = _differences(metadata, config)
    if differences:
        return "stale", f"{root}: holds a synthetic dataset generated with other parameters ({'; '.join(differences)})"
    if "files" not in metadata:
        return "unverified", f"{root}: generated before {METADATA_FILE} recorded a file manifest"
    mismatch = manifest_mismatch(root, checksums)
    return ("damaged", mismatch) if mismatch else ("current", None)


def generate(root: str | None = None, *, overwrite: bool = False, progress: bool = False, checksums: bool = True,
             **params) -> str:
    """Generate the synthetic dataset into `root` unless it already holds this configuration; return `root`.

    The dataset is written into a temporary folder beside `root` and renamed into place when complete, so that no
    reader ever sees half a dataset, and concurrent callers (test workers) agree on one copy. synthetic.json records
    the parameters and a manifest (size and CRC-32 of every image); an existing root is reused only if its images
    still match it (`manifest_mismatch`). The temporary folders (the one being written, and a replaced copy being
    deleted) are named `.<root name>.tmp-<pid>-...` after their process (`_staging`); every call first removes those
    whose process has ended (a killed generator's), never a running one's (`engine.atomic`).

    Args:
      root: the dataset folder; None: `default_root(config)`.
      overwrite: replace a root generated with other parameters, or whose images no longer match its manifest (a
        root with other content is never touched).
      progress: show a progress bar.
      checksums: compare the CRC-32 of each image of an existing root with the manifest; False checks the file
        names and sizes only.
      **params: SyntheticConfig fields.

    Raises:
      DatasetError: `root` holds something else, or a dataset generated with other parameters or no longer matching
        its manifest, and not `overwrite`.
    """
    config = make_config(**params)
    root = os.path.abspath(os.path.expanduser(root or default_root(config)))
    atomic.remove_dead_temporaries(_hidden(root))
    state, why = _state(root, config, checksums)
    if state == "current":
        return root
    if state in ("stale", "damaged") and not overwrite:
        raise DatasetError(f"{why}; pass another root or overwrite=True (--overwrite) to regenerate it")
    if state == "unverified" and progress:
        # Ours (synthetic.json says so) and of these parameters, but it cannot be checked: regenerating changes no
        # byte of an intact copy and repairs a damaged one.
        print(f"synthetic dataset: {why}; regenerating it", file=sys.stderr)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = _staging(root, "partial")
    try:
        summary = _write_images(staging, config, progress)
        metadata = {"generator": GENERATOR, "version": GENERATOR_VERSION, "config": dataclasses.asdict(config),
                    **summary}
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=1)
        faults.point("synthetic_staged", sum(summary["images"].values()))
        _move_into_place(staging, root, config, checksums)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _move_into_place(staging: str, root: str, config: SyntheticConfig, checksums: bool = True) -> None:
    # Decided again here: another process may have put a sound copy of the same configuration in place meanwhile.
    if _state(root, config, checksums)[0] in ("stale", "damaged", "unverified"):
        old = _staging(root, "old")
        os.replace(root, os.path.join(old, "dataset"))
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(staging, root)
    except OSError:
        # Another process renamed its copy first; fine if it is the same configuration, intact.
        if _state(root, config, checksums)[0] != "current":
            raise


def _hidden(root: str) -> str:
    """`.<root name>` beside `root`: the name the temporary folders of `root` extend (hidden from listings)."""
    return os.path.join(os.path.dirname(root), "." + os.path.basename(root))


def _staging(root: str, purpose: str) -> str:
    """A new empty folder `.<root name>.tmp-<pid>-<purpose>-<random>` beside `root`: `engine.atomic`'s temporary
    name of `_hidden(root)`, so that the next call removes it if this process dies (a SIGKILL runs no cleanup)."""
    return tempfile.mkdtemp(prefix=f"{os.path.basename(_hidden(root))}.tmp-{os.getpid()}-{purpose}-",
                            dir=os.path.dirname(root))


def default_root(config: SyntheticConfig) -> str:
    """Where a configuration lives when no root is given: DEFAULT_ROOT for the default configuration, a sibling
    named after the differing parameters otherwise."""
    changed = [f"{k}{v}" for k, v in dataclasses.asdict(config).items()
               if v != getattr(SyntheticConfig, k)]
    return DEFAULT_ROOT if not changed else f"{DEFAULT_ROOT}-{'-'.join(changed)}"
