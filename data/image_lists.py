"""Images without a dataset layout, as a Record for extraction (`acp-extract --query_images --gallery_images`):
your folder of crops, searched without labels.

Each of the query and gallery sources is one of
- a folder: every image directly inside it (`.jpg`, `.jpeg`, `.png`, `.bmp`), sorted by name; subfolders are not
  searched, so a folder of folders is an error rather than a silently empty set;
- one image file;
- a csv list file (`data.datasets.csv_lists`): header `path,pid,camid` with labels, or `path` alone without;
  paths relative to the list's folder or absolute.
Images found in folders or given as files have no labels (pid and camid None: search mode). Every path is made
absolute, so the feature file extracted from them still names the images wherever it is read. An image may be a
query or a gallery image, not both (a query in the gallery is its own best match); errors name the source.
"""
from __future__ import annotations

import os

from data.datasets import common, csv_lists
from data.record import DatasetError, Record, Sample

SUBSETS = ("query", "gallery")


def read_images(source: str, subset: str, listed: dict[str, str]) -> tuple[Sample, ...]:
    """The samples of one source (see the module docstring) for `subset`.

    `listed`: absolute image path -> where it was found, for the sources read before; an image among them is an
    error naming both, and this source's images are added to it.
    """
    flag = f"--{subset}_images={source}"
    if os.path.isdir(source):
        names = common.list_images(source)
        if not names:
            raise DatasetError(f"{flag}: the folder holds no images ({', '.join(common.IMAGE_EXTENSIONS)}) directly "
                               "inside it; subfolders are not searched")
        samples = tuple(Sample(os.path.abspath(os.path.join(source, name)), None, None) for name in names)
    elif source.lower().endswith(".csv") and os.path.isfile(source):
        samples = csv_lists.read_list(source, subset)
    elif source.lower().endswith(common.IMAGE_EXTENSIONS) and os.path.isfile(source):
        samples = (Sample(os.path.abspath(source), None, None),)
    elif not os.path.exists(source):
        raise DatasetError(f"{flag}: not found")
    else:
        raise DatasetError(f"{flag}: neither a folder, an image ({', '.join(common.IMAGE_EXTENSIONS)}) nor a .csv "
                           "list file")
    for sample in samples:
        if sample.path in listed:
            raise DatasetError(f"{flag}: {sample.path} is also {listed[sample.path]}; an image is a query or a "
                               "gallery image, not both")
    listed.update((sample.path, f"a {subset} image ({flag})") for sample in samples)
    return samples


def image_record(query: str = "", gallery: str = "") -> Record:
    """The Record of the query and gallery sources given (at least one; see the module docstring), no training
    images. Its name is "" (no registered dataset), its split names the sources."""
    sources = {"query": query, "gallery": gallery}
    if not any(sources.values()):
        raise DatasetError("give --query_images and/or --gallery_images: a folder of crops, an image or a .csv list")
    listed: dict[str, str] = {}
    lists = {subset: read_images(source, subset, listed) if source else () for subset, source in sources.items()}
    split = ", ".join(f"{subset}={os.path.abspath(source)}" for subset, source in sources.items() if source)
    return Record("", (), lists["query"], lists["gallery"], split=split)
