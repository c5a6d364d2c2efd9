r"""Features from other toolkits into the feature-file schema of `features.feature_file` (the library of
`acp-import-features`, `features.cli.import_features`).

    acp-import-features --input=pytorch_result.mat --dataset=market1501 --output=features/market_imported.npz
    acp-import-features --query_features=q.npy --query_pids=q_pids.npy --query_camids=q_cams.txt \
        --gallery_features=g.npy --gallery_pids=g_pids.npy --gallery_camids=g_cams.txt \
        [--train_features=... --train_pids=... --train_camids=...] --dataset=market1501 --output=imported.npz

Two sources:
- layumi-style `pytorch_result.mat` (Person_reID_baseline_pytorch's test.py; also what many FastReID / torchreid
  users dump): keys `query_f` [Nq, D], `gallery_f` [Ng, D], `query_label`, `gallery_label`, `query_cam`,
  `gallery_cam` (1 x N), optionally `train_f`, `train_label`, `train_cam`. MATLAB v5 files (scipy.io.savemat) are
  read with scipy, v7.3 files (HDF5) with h5py; v7.3 stores matrices column-major, so an N x D matrix appears as
  D x N and is transposed back (the label count decides when the shape is ambiguous).
- plain arrays: features, pids and camids per split, each a `.npy`, a `.npz` member (`file.npz:key`), or a
  `.txt` / `.csv` column. Query and gallery may come without pids and camids (search mode: their rows get
  `feature_file.NO_LABEL`, and `acp-rerank` ranks them without evaluating); training rows need both.

Junk images (given pid -1, Market-1501's convention, kept by layumi's script) are dropped, as the dataset readers
of `data.datasets` do: the evaluation protocols ignore them anyway. Imported files have no image paths (`path` is
"") and no multi-block features, so ACP runs on them without multi-block fusion.
"""
from __future__ import annotations

import os

import numpy as np
from absl import logging

from features.feature_file import NO_LABEL, SPLIT_CODES, FeatureFileError, FeatureSet, concatenate

MAT_SPLITS = ("train", "query", "gallery")
JUNK_PID = -1
# The keyword arguments of `import_arrays` (acp-import-features takes them as flags of the same names).
ARRAY_NAMES = tuple(f"{split}_{kind}" for split in MAT_SPLITS for kind in ("features", "pids", "camids"))


def _split_rows(features, pids, camids, split: str, origin: str, dataset: str, source: str) -> FeatureSet:
    """The rows of one split; without pids and camids (both None) every row is `NO_LABEL`."""
    features = np.asarray(features)
    labelled = pids is not None
    if not labelled:
        pids = camids = np.full(len(features), NO_LABEL, np.int64)
    pids, camids = np.ravel(pids), np.ravel(camids)
    for field, values in ((f"{split} pids", pids), (f"{split} camids", camids)):
        if len(values) != len(features):
            raise FeatureFileError(f"{origin}: {field} has {len(values)} entries but {split} features have "
                                   f"{len(features)} rows")
    if features.ndim != 2:
        raise FeatureFileError(f"{origin}: {split} features must be 2-D [N, D], got shape {features.shape}")
    keep = pids != JUNK_PID if labelled else np.ones(len(pids), bool)
    if not keep.all():
        logging.info("%s: dropped %d junk %s images (pid -1)", origin, int((~keep).sum()), split)
    n = int(keep.sum())
    return FeatureSet(embedding=features[keep], pid=pids[keep], camid=camids[keep],
                      split=np.full(n, SPLIT_CODES[split], np.int8), dataset=dataset, source=source,
                      origin=f"{origin} [{split}]")


def import_arrays(query_features=None, query_pids=None, query_camids=None, gallery_features=None, gallery_pids=None,
                  gallery_camids=None, train_features=None, train_pids=None, train_camids=None, dataset: str = "",
                  source: str = "import numpy arrays", origin: str = "<arrays>", protocol: str = "",
                  dataset_split: str = "") -> FeatureSet:
    """One FeatureSet from per-split arrays (train optional; query and gallery without pids and camids are
    unlabelled, see the module docstring); FeatureFileError naming the missing or mismatched field. `protocol` and
    `dataset_split` are recorded in the file (its evaluation protocol; "" = unknown)."""
    given = {"train": (train_features, train_pids, train_camids), "query": (query_features, query_pids, query_camids),
             "gallery": (gallery_features, gallery_pids, gallery_camids)}
    parts = []
    for split, arrays in given.items():
        features, pids, camids = arrays
        if split == "train" and all(a is None for a in arrays):
            continue
        if features is None:
            raise FeatureFileError(f"{origin}: {split} features are missing")
        if (pids is None) != (camids is None):
            has, lacks = ("pids", "camids") if camids is None else ("camids", "pids")
            raise FeatureFileError(f"{origin}: {split} {has} without {split} {lacks}; give both or, for "
                                   "images without labels, neither")
        if split == "train" and pids is None:
            raise FeatureFileError(f"{origin}: train features need train pids and camids (ACP trains on labels)")
        parts.append(_split_rows(*arrays, split, origin, dataset, source))
    dims = {part.origin: part.dim for part in parts}
    if len(set(dims.values())) > 1:
        raise FeatureFileError(f"{origin}: feature dimensions differ between splits: {dims}")
    return concatenate(parts, origin=origin, dataset=dataset, source=source, protocol=protocol,
                       dataset_split=dataset_split)


def _mat_version(path: str) -> str:
    import h5py
    from scipy.io.matlab import matfile_version

    try:
        major, _ = matfile_version(path)
    except (ValueError, OSError) as err:
        if h5py.is_hdf5(path):
            return "hdf5"
        raise FeatureFileError(f"{path}: not a MATLAB .mat file ({err})") from None
    if major == 2 or h5py.is_hdf5(path):
        return "hdf5"
    if major in (0, 1):
        return "v5"
    raise FeatureFileError(f"{path}: unsupported MATLAB file version {major}")


def _read_mat_v5(path: str) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    contents = loadmat(path)
    return {key: np.asarray(value) for key, value in contents.items() if not key.startswith("__")}


def _read_mat_hdf5(path: str) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key]) for key in handle.keys() if isinstance(handle[key], h5py.Dataset)}


def _orient(features: np.ndarray, count: int, column_major: bool, where: str) -> np.ndarray:
    """Rows = images. MATLAB v7.3 keeps column-major order: an N x D matrix is stored as D x N."""
    if features.ndim != 2:
        raise FeatureFileError(f"{where} must be a 2-D matrix, got shape {features.shape}")
    rows_match, columns_match = features.shape[0] == count, features.shape[1] == count
    if rows_match and columns_match:
        return features.T if column_major else features
    if columns_match:
        return features.T
    if rows_match:
        return features
    raise FeatureFileError(f"{where} has shape {features.shape}, but the labels name {count} images")


def import_mat(path: str, dataset: str = "", protocol: str = "", dataset_split: str = "") -> FeatureSet:
    """Read a layumi-style `pytorch_result.mat` (MATLAB v5 or v7.3) into a FeatureSet (facts as `import_arrays`)."""
    if not os.path.isfile(path):
        raise FeatureFileError(f"{path}: file not found")
    version = _mat_version(path)
    try:
        contents = _read_mat_hdf5(path) if version == "hdf5" else _read_mat_v5(path)
    except (OSError, ValueError, EOFError, KeyError) as err:  # a cut or damaged file fails inside scipy / h5py
        raise FeatureFileError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    arrays = {}
    for split in MAT_SPLITS:
        keys = (f"{split}_f", f"{split}_label", f"{split}_cam")
        present = [key for key in keys if key in contents]
        if split == "train" and not present:
            continue
        missing = [key for key in keys if key not in contents]
        if missing:
            raise FeatureFileError(f"{path}: field '{missing[0]}' is missing (a pytorch_result.mat holds "
                                   f"{', '.join(keys)}; found {sorted(contents)})")
        pids, camids = np.ravel(contents[keys[1]]), np.ravel(contents[keys[2]])
        features = _orient(contents[keys[0]], len(pids), version == "hdf5", f"{path}: field '{keys[0]}'")
        arrays.update({f"{split}_features": features, f"{split}_pids": pids, f"{split}_camids": camids})
    return import_arrays(**arrays, dataset=dataset, source=f"import {os.path.basename(path)}", origin=path,
                         protocol=protocol, dataset_split=dataset_split)


def load_array(spec: str, name: str) -> np.ndarray:
    """An array from `file.npy`, `file.npz:key` (or a one-array `file.npz`), or a `.txt` / `.csv` column.

    `name` (e.g. the flag) is used in error messages.
    """
    file_path, _, key = spec.partition(":") if ".npz:" in spec else (spec, "", "")
    if not os.path.isfile(file_path):
        raise FeatureFileError(f"{file_path}: file not found (for {name})")
    try:
        if file_path.endswith(".npy"):
            return np.load(file_path, allow_pickle=False)
        if file_path.endswith(".npz"):
            with np.load(file_path, allow_pickle=False) as archive:
                if not key:
                    if len(archive.files) != 1:
                        raise FeatureFileError(f"{file_path}: holds {archive.files}; name one as {file_path}:KEY "
                                               f"(for {name})")
                    key = archive.files[0]
                if key not in archive.files:
                    raise FeatureFileError(f"{file_path}: has no array '{key}' (has {archive.files}) (for {name})")
                return archive[key]
        if file_path.endswith((".txt", ".csv")):
            return np.loadtxt(file_path, delimiter="," if file_path.endswith(".csv") else None, ndmin=1)
    except (OSError, ValueError) as err:
        if isinstance(err, FeatureFileError):
            raise
        raise FeatureFileError(f"{file_path}: cannot read (for {name}): {err}") from None
    raise FeatureFileError(f"{file_path}: unknown array file type (for {name}); use .npy, .npz[:key], .txt or .csv")
