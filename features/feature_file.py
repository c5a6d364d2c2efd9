"""The feature file: what a re-ID baseline hands to ACP and the classic re-rankers.

Schema, format version 2 (a NumPy `.npz`, uncompressed; N images of one dataset split):

| key         | dtype / shape     | holds |
|-------------|-------------------|-------|
| `version`   | int64, scalar     | `FORMAT_VERSION` (2); readers refuse versions they do not know (1 is read too) |
| `dataset`   | str, scalar       | the dataset's registry name (`data.datasets.names()`), "" if unknown |
| `dataset_split` | str, scalar   | the dataset split the rows are (the reader's `Record.split`, e.g. "kvmmn/0", "800/3"), "" if unknown |
| `protocol`  | str, scalar       | the evaluation protocol of that split (the reader's `Record.protocol`, one of `data.evaluation.PROTOCOLS`), "" if unknown |
| `source`    | str, scalar       | what produced the file (e.g. "acp-extract ckpt-1200", "import pytorch_result.mat") |
| `embedding` | float32, [N, D]   | the retrieval feature; for our baseline the BNNeck output (post-BN), as BoT tests |
| `pid`       | int64, [N]        | identity: train ids relabelled 0..P-1, query/gallery ids original, distractors 0; `NO_LABEL` (-1) for an image without labels (search mode) |
| `camid`     | int64, [N]        | camera id; `NO_LABEL` exactly where pid is |
| `split`     | int8, [N]         | 0 train, 1 query, 2 gallery (`SPLIT_CODES`) |
| `path`      | str, [N]          | absolute image path (`acp-extract`), so the file names its images wherever it is read; "" when the source had none (imported arrays) |
| `f3`,`f4`,`f5` | float32, [N, D3], [N, D4], [N, D5] | optional group, all three or none: the global-average-pooled last three blocks of the backbone that ACP's multi-block feature fusion reads (ACP Sec. III-B1, Eq. 2); any widths (ResNet-50's C3, C4, C5: 512, 1024, 2048, `RESNET50_BLOCK_WIDTHS`), each array carries its own (`FeatureSet.block_widths`) |

Facts travel with the rows: `protocol` and `dataset_split` are written from the dataset reader's record when the
features are extracted (`features.extraction`), so re-ranking evaluates a file under its own protocol without the
dataset on disk (`rerank.runner`). Version 1 files (no `protocol`, `dataset_split`; widths fixed to ResNet-50's)
are read as version 2 with both facts "".

All arrays hold finite values. `load_features` checks every rule and raises `FeatureFileError` naming the file
and the field. Large sets (100K images) are written in chunks (`ChunkedFeatureWriter`): each chunk is its own
small feature file in `<output>.parts/`, a killed job resumes by skipping the chunks on disk, and the final file is
assembled by streaming the chunks into the zip archive, so at no point are all features of the set in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from typing import Callable, Iterable, Sequence

import numpy as np

from data.evaluation import PROTOCOLS
from engine import atomic, run_dir

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PARTS_TOOL = "acp-extract"  # the owner named in a `<output>.parts` folder's marker (`engine.run_dir`)
NO_LABEL = -1  # pid and camid of an image without labels (search mode: a folder of crops, an unlabelled list)
SPLIT_CODES = {"train": 0, "query": 1, "gallery": 2}
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
BLOCK_NAMES = ("f3", "f4", "f5")
RESNET50_BLOCK_WIDTHS = {"f3": 512, "f4": 1024, "f5": 2048}  # what our baseline writes (`features.head`)
ARRAY_FIELDS = ("embedding", "pid", "camid", "split", "path") + BLOCK_NAMES
META_FIELDS = ("version", "dataset", "source", "dataset_split", "protocol")
FACTS = ("dataset", "source", "dataset_split", "protocol")  # the string scalars that describe the rows


class FeatureFileError(ValueError):
    """A feature file (or arrays meant for one) breaks the schema; the message names the file and field."""


def split_codes(split, origin: str = "<arrays>") -> np.ndarray:
    """Split names ("train", "query", "gallery") or codes (0, 1, 2) as int8 codes."""
    split = np.asarray(split)
    if split.dtype.kind in "US":
        unknown = sorted(set(split.astype(str).tolist()) - set(SPLIT_CODES))
        if unknown:
            raise FeatureFileError(f"{origin}: field 'split' holds unknown names {unknown[:5]}; "
                                   f"expected {sorted(SPLIT_CODES)}")
        return np.vectorize(SPLIT_CODES.get, otypes=[np.int8])(split) if split.size else split.astype(np.int8)
    if split.dtype.kind not in "iu":
        raise FeatureFileError(f"{origin}: field 'split' must hold integers or names, got dtype {split.dtype}")
    if split.size and not np.isin(split, list(SPLIT_NAMES)).all():
        raise FeatureFileError(f"{origin}: field 'split' holds codes other than 0 (train), 1 (query), 2 (gallery)")
    return split.astype(np.int8)


def _int_labels(values, field: str, origin: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise FeatureFileError(f"{origin}: field '{field}' must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise FeatureFileError(f"{origin}: field '{field}' must hold integers, got non-integral values")
    elif array.dtype.kind not in "iub":
        raise FeatureFileError(f"{origin}: field '{field}' must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _float_matrix(values, field: str, origin: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise FeatureFileError(f"{origin}: field '{field}' must be 2-D [N, D], got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise FeatureFileError(f"{origin}: field '{field}' must hold numbers, got dtype {array.dtype}")
    if array.shape[1] < 1:
        raise FeatureFileError(f"{origin}: field '{field}' has width 0")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise FeatureFileError(f"{origin}: field '{field}' holds NaN or infinite values (first in row {bad})")
    return array


@dataclasses.dataclass
class FeatureSet:
    """The arrays of one feature file; constructing one validates it (FeatureFileError naming `origin`)."""

    embedding: np.ndarray
    pid: np.ndarray
    camid: np.ndarray
    split: np.ndarray
    path: np.ndarray | None = None
    f3: np.ndarray | None = None
    f4: np.ndarray | None = None
    f5: np.ndarray | None = None
    dataset: str = ""
    source: str = ""
    dataset_split: str = ""
    protocol: str = ""
    version: int = FORMAT_VERSION
    origin: str = dataclasses.field(default="<arrays>", repr=False, compare=False)

    def __post_init__(self):
        origin = self.origin
        if self.version != FORMAT_VERSION:
            raise FeatureFileError(f"{origin}: field 'version' is {self.version}, but this code reads format "
                                   f"version {FORMAT_VERSION} only")
        self.embedding = _float_matrix(self.embedding, "embedding", origin)
        n = self.embedding.shape[0]
        self.pid = _int_labels(self.pid, "pid", origin)
        self.camid = _int_labels(self.camid, "camid", origin)
        self.split = split_codes(self.split, origin)
        if self.split.ndim != 1:
            raise FeatureFileError(f"{origin}: field 'split' must be 1-D, got shape {self.split.shape}")
        self.path = np.full(n, "", dtype="<U1") if self.path is None else np.asarray(self.path)
        if self.path.dtype.kind not in "U" or self.path.ndim != 1:
            raise FeatureFileError(f"{origin}: field 'path' must be a 1-D array of strings, got "
                                   f"{self.path.dtype} {self.path.shape}")
        blocks = [name for name in BLOCK_NAMES if getattr(self, name) is not None]
        if blocks and len(blocks) != len(BLOCK_NAMES):
            missing = sorted(set(BLOCK_NAMES) - set(blocks))
            raise FeatureFileError(f"{origin}: multi-block features come as a group: has {blocks} but not "
                                   f"{missing}")
        for name in blocks:
            setattr(self, name, _float_matrix(getattr(self, name), name, origin))
        for name in ARRAY_FIELDS[1:]:
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise FeatureFileError(f"{origin}: field '{name}' has {len(value)} rows but 'embedding' has {n}")
        half = (self.pid == NO_LABEL) != (self.camid == NO_LABEL)
        if half.any():
            raise FeatureFileError(f"{origin}: row {int(np.argmax(half))} has a pid or a camid of {NO_LABEL} (no "
                                   "label) but not both; an image has both labels or neither")
        for name in FACTS:
            setattr(self, name, str(getattr(self, name)))
        if self.protocol and self.protocol not in PROTOCOLS:
            raise FeatureFileError(f"{origin}: field 'protocol' is {self.protocol!r}; expected one of {PROTOCOLS} "
                                   "or '' (unknown)")

    def __len__(self) -> int:
        return self.embedding.shape[0]

    @property
    def has_multi_block(self) -> bool:
        return self.f3 is not None

    @property
    def multi_block(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f3, f4, f5); FeatureFileError when the file has no multi-block features."""
        if not self.has_multi_block:
            raise FeatureFileError(f"{self.origin}: no multi-block features (f3, f4, f5); extract them with "
                                   "acp-extract, or use ACP without multi-block fusion")
        return self.f3, self.f4, self.f5

    @property
    def block_widths(self) -> dict[str, int]:
        """{"f3": D3, "f4": D4, "f5": D5} of the multi-block features ({} without them)."""
        return {name: getattr(self, name).shape[1] for name in BLOCK_NAMES} if self.has_multi_block else {}

    def facts(self) -> dict[str, str]:
        """dataset, source, dataset_split and protocol: what a subset or a concatenation keeps."""
        return {name: getattr(self, name) for name in FACTS}

    @property
    def labelled(self) -> bool:
        """Whether every row has a pid and a camid (none is `NO_LABEL`): what evaluation needs."""
        return not (self.pid == NO_LABEL).any()

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields present, by schema key."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS if getattr(self, name) is not None}

    def select(self, mask_or_index) -> "FeatureSet":
        """The rows chosen by a boolean mask or an index array, as a new FeatureSet."""
        fields = {name: value[mask_or_index] for name, value in self.arrays().items()}
        return FeatureSet(**fields, **self.facts(), origin=self.origin)

    def subset(self, split) -> "FeatureSet":
        """The rows of one split, by name ("train", "query", "gallery") or code."""
        code = SPLIT_CODES[split] if isinstance(split, str) and split in SPLIT_CODES else split
        if code not in SPLIT_NAMES:
            raise FeatureFileError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
        return self.select(self.split == code)

    @property
    def train(self) -> "FeatureSet":
        return self.subset("train")

    @property
    def query(self) -> "FeatureSet":
        return self.subset("query")

    @property
    def gallery(self) -> "FeatureSet":
        return self.subset("gallery")

    def summary(self) -> str:
        counts = {name: int((self.split == code).sum()) for name, code in SPLIT_CODES.items()}
        blocks = (f"with f3/f4/f5 of widths {'/'.join(map(str, self.block_widths.values()))}" if self.has_multi_block
                  else "without multi-block features")
        split = f" split {self.dataset_split}" if self.dataset_split else ""
        protocol = f"protocol {self.protocol}" if self.protocol else "no protocol recorded"
        return (f"{self.origin}: {len(self)} x {self.dim} embeddings of {self.dataset or 'an unnamed dataset'}{split} "
                f"(train {counts['train']}, query {counts['query']}, gallery {counts['gallery']}), {protocol}, "
                f"{blocks}")


def concatenate(parts: Sequence[FeatureSet], origin: str = "<arrays>", **facts) -> FeatureSet:
    """Rows of several FeatureSets in order (all with or all without multi-block features, of the same widths).

    `facts` (dataset, source, dataset_split, protocol) default to the first part's."""
    if not parts:
        raise FeatureFileError("concatenate needs at least one FeatureSet")
    if len({tuple(part.block_widths.items()) for part in parts}) > 1:
        raise FeatureFileError("cannot concatenate feature sets with different multi-block features: "
                               + ", ".join(f"{part.origin} {part.block_widths or 'none'}" for part in parts))
    fields = {name: np.concatenate([part.arrays()[name] for part in parts]) for name in parts[0].arrays()}
    return FeatureSet(**fields, **{**parts[0].facts(), **{k: v for k, v in facts.items() if v}}, origin=origin)


def _meta_arrays(**facts) -> dict[str, np.ndarray]:
    """The scalar fields of a file: the format version and the FACTS (all of them, "" where unknown)."""
    unknown = set(facts) - set(FACTS)
    if unknown:
        raise ValueError(f"unknown feature-file facts {sorted(unknown)}; expected {FACTS}")
    return {"version": np.asarray(FORMAT_VERSION, np.int64),
            **{name: np.asarray(str(facts.get(name, ""))) for name in FACTS}}


def save_features(file_path: str, features: FeatureSet) -> str:
    """Write `features` to `file_path` (.npz; atomically, `engine.atomic`). Returns the path."""
    with atomic.atomic_path(file_path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **features.arrays(), **_meta_arrays(**features.facts()))
    return file_path


def load_features(file_path: str) -> FeatureSet:
    """Read and validate a feature file; FeatureFileError naming the file and field on any schema violation."""
    if not os.path.isfile(file_path):
        raise FeatureFileError(f"{file_path}: feature file not found")
    try:
        archive = np.load(file_path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{file_path}: not a readable .npz feature file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FeatureFileError(f"{file_path}: holds a single array, not an .npz feature file")
    with archive:
        keys = set(archive.files)
        if "version" not in keys:
            raise FeatureFileError(f"{file_path}: field 'version' is missing (not a feature file of this schema)")
        version = archive["version"]
        if version.shape != () or version.dtype.kind not in "iu":
            raise FeatureFileError(f"{file_path}: field 'version' must be an integer scalar, got {version!r}")
        if int(version) not in READABLE_VERSIONS:
            raise FeatureFileError(f"{file_path}: field 'version' is {int(version)}, but this code reads format "
                                   f"versions {list(READABLE_VERSIONS)} only")
        for field in ("embedding", "pid", "camid", "split"):
            if field not in keys:
                raise FeatureFileError(f"{file_path}: required field '{field}' is missing")
        known = META_FIELDS[:3] if int(version) == 1 else META_FIELDS  # version 1 had no dataset_split, protocol
        unknown = keys - set(ARRAY_FIELDS) - set(known)
        if unknown:
            raise FeatureFileError(f"{file_path}: unknown fields {sorted(unknown)} (format version {int(version)}"
                                   f" has {list(known + ARRAY_FIELDS)})")
        try:  # members are decompressed and CRC-checked only when read
            fields = {name: archive[name] for name in ARRAY_FIELDS if name in keys}
            facts = {name: str(archive[name]) for name in FACTS if name in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise FeatureFileError(f"{file_path}: a field cannot be read ({err}); the file is damaged") from None
    return FeatureSet(**fields, **facts, origin=file_path)


# ----------------------------------------------------------------------------------------------- chunked writing
def _write_member(archive: zipfile.ZipFile, name: str, shape: tuple, dtype: np.dtype,
                  pieces: Iterable[np.ndarray]) -> None:
    """Stream the rows of `pieces` into the archive as `<name>.npy` (NumPy format 2.0 header: no size limit)."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_2_0(member, header)
        for piece in pieces:
            member.write(np.asarray(piece, dtype=dtype).tobytes(order="C"))


def _digest(items: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode("utf-8") + b"\0")
    return digest.hexdigest()


class ChunkedFeatureWriter:
    """Writes a feature file of `num_rows` rows chunk by chunk, resumably.

    Chunks live in `<output>.parts/chunk_<index>.npz` beside `manifest.json`, which records `plan` (anything that
    identifies the job: dataset, checkpoint, the digest of the image list, chunk size). A new writer on the same
    output with the same plan continues where a killed one stopped; a different plan is refused (delete the parts
    directory or pass `overwrite=True`). `finalize()` streams the chunks into `output` and removes the parts.

    The parts folder is the writer's own (`engine.run_dir`: marked `.reid-owned` by acp-extract): a user's folder
    that happens to be named `<output>.parts` is refused, never written into nor deleted, `overwrite` included.
    Both paths are checked before any chunk is computed (an `output` that is a folder is refused at once, not at
    the final rename).
    """

    def __init__(self, output: str, num_rows: int, chunk_size: int, plan: dict, overwrite: bool = False):
        if num_rows < 1:
            raise FeatureFileError(f"{output}: nothing to write (0 rows)")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.output, self.num_rows, self.chunk_size = run_dir.check_output_file(output), num_rows, chunk_size
        self.parts_dir = output + ".parts"
        self.plan = {**plan, "num_rows": num_rows, "chunk_size": chunk_size, "version": FORMAT_VERSION}
        manifest = os.path.join(self.parts_dir, "manifest.json")
        if overwrite:
            run_dir.remove_owned(self.parts_dir, PARTS_TOOL)
        run_dir.claim(self.parts_dir, PARTS_TOOL, signature="manifest.json")  # ours, or from before the markers
        if os.path.exists(manifest):
            with open(manifest) as handle:
                previous = json.load(handle)
            if previous != json.loads(json.dumps(self.plan)):
                changed = sorted(k for k in set(previous) | set(self.plan) if previous.get(k) != self.plan.get(k))
                raise FeatureFileError(f"{self.parts_dir}: holds chunks of another job (differs in {changed}); "
                                       "delete it or rerun with --overwrite")
        else:
            atomic.write_text(manifest, json.dumps(self.plan, indent=1, sort_keys=True))

    @property
    def num_chunks(self) -> int:
        return -(-self.num_rows // self.chunk_size)

    def rows(self, index: int) -> tuple[int, int]:
        """[start, stop) of chunk `index`."""
        return index * self.chunk_size, min((index + 1) * self.chunk_size, self.num_rows)

    def chunk_path(self, index: int) -> str:
        return os.path.join(self.parts_dir, f"chunk_{index:05d}.npz")

    def pending(self) -> list[int]:
        """Chunks not yet on disk (chunks are renamed into place whole, so one on disk is complete)."""
        return [i for i in range(self.num_chunks) if not os.path.exists(self.chunk_path(i))]

    def write_chunk(self, index: int, features: FeatureSet) -> None:
        start, stop = self.rows(index)
        if len(features) != stop - start:
            raise FeatureFileError(f"{self.chunk_path(index)}: chunk {index} needs {stop - start} rows, got "
                                   f"{len(features)}")
        save_features(self.chunk_path(index), features)

    def finalize(self, keep_parts: bool = False, **facts) -> str:
        """Assemble the chunks into `output` (streamed: one chunk's field in memory at a time); `facts`: dataset,
        source, dataset_split, protocol."""
        missing = self.pending()
        if missing:
            raise FeatureFileError(f"{self.parts_dir}: chunks {missing[:10]} are missing; run the extraction again")
        first = load_features(self.chunk_path(0))
        layout, path_length = {}, 1
        for index in range(self.num_chunks):
            with np.load(self.chunk_path(index), allow_pickle=False) as archive:
                present = {name for name in ARRAY_FIELDS if name in archive.files}
                if present != set(first.arrays()):
                    raise FeatureFileError(f"{self.chunk_path(index)}: has fields {sorted(present)}, chunk 0 has "
                                           f"{sorted(first.arrays())}")
                for name in present:
                    value = archive[name]
                    if value.shape[1:] != first.arrays()[name].shape[1:]:
                        raise FeatureFileError(f"{self.chunk_path(index)}: field '{name}' has shape {value.shape}, "
                                               f"chunk 0 has rows of {first.arrays()[name].shape[1:]}")
                    if name == "path":
                        path_length = max(path_length, value.dtype.itemsize // 4)
        for name, value in first.arrays().items():
            dtype = np.dtype(f"<U{path_length}") if name == "path" else value.dtype
            layout[name] = ((self.num_rows,) + value.shape[1:], dtype)

        def pieces(name):
            for index in range(self.num_chunks):
                with np.load(self.chunk_path(index), allow_pickle=False) as archive:
                    yield archive[name]

        meta = _meta_arrays(**facts)
        with atomic.atomic_path(self.output) as temporary, \
                zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, (shape, dtype) in layout.items():
                _write_member(archive, name, shape, dtype, pieces(name))
            for name, value in meta.items():
                _write_member(archive, name, (), value.dtype, [value])
        if not keep_parts:
            run_dir.remove_owned(self.parts_dir, PARTS_TOOL)
        return self.output


def write_chunked(output: str, rows: Sequence, compute: Callable[[Sequence], FeatureSet], chunk_size: int,
                  plan: dict, overwrite: bool = False, on_chunk: Callable[[int, int], None] | None = None,
                  **facts) -> str:
    """Compute and write a feature file for `rows` (e.g. (Sample, split) pairs) `chunk_size` rows at a time.

    `compute(rows_of_one_chunk) -> FeatureSet` runs only for chunks not yet on disk, so rerunning after a kill
    continues where it stopped. `plan` identifies the job (see ChunkedFeatureWriter); the digest of `rows` is
    added to it. `on_chunk(done, total)` reports progress. `facts`: dataset, source, dataset_split, protocol.
    """
    plan = {**plan, "rows_sha256": _digest(repr(row) for row in rows)}
    writer = ChunkedFeatureWriter(output, len(rows), chunk_size, plan, overwrite=overwrite)
    pending = writer.pending()
    done = writer.num_chunks - len(pending)
    for index in pending:
        start, stop = writer.rows(index)
        writer.write_chunk(index, compute(rows[start:stop]))
        done += 1
        if on_chunk is not None:
            on_chunk(done, writer.num_chunks)
    return writer.finalize(**facts)
