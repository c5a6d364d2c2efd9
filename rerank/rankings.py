"""Ranking files: per query, its first k gallery items, best first, with image paths and distances and, when the
query and gallery rows are labelled, their labels and whether each item is a match (the query's identity).
`acp-rerank --top_list` writes them (search mode included: no labels needed) and `reid-visrank` draws them.

One schema, three formats chosen by the file's extension:

| field | per | holds |
|---|---|---|
| `query` | query | the query's row among the query rows of the ranked set (0-based) |
| `query_path` | query | its image |
| `rank` | item | 1 for the best gallery item |
| `gallery` | item | the item's row among the gallery rows (0-based) |
| `gallery_path` | item | its image |
| `distance` | item | the (re-ranked) distance; ascending with rank |
| `query_pid`, `query_camid`, `gallery_pid`, `gallery_camid`, `match` | query / item | only when labelled |

- `.json`: `{"format": "reid-ranking", "version": 1, "labelled": bool, "meta": {...}, "queries": [{"query", "path",
  ["pid", "camid"], "ranking": [{"rank", "gallery", "path", "distance", ["pid", "camid", "match"]}, ...]}, ...]}`;
  `meta` says what ranked (method, params, feature file).
- `.csv`: one line per (query, rank), header `query,query_path,rank,gallery,gallery_path,distance` and, when
  labelled, `,query_pid,query_camid,gallery_pid,gallery_camid,match` (match 1 or 0).
- `.npz`: the per-query fields as [Q] arrays, the per-item fields as [Q, k] arrays (`rank` implied by the column;
  rows of fewer items are padded with gallery -1, path "" and distance NaN); `match` is not stored. Compact for
  thousands of queries.

Paths are written as the ranked set holds them; feature files of `acp-extract` hold absolute paths, so a ranking
file stays usable wherever it is moved or read from. Every write is atomic (`engine.atomic`). Reading checks the
schema and raises `RankingFileError` naming the file and the line (CSV) or entry (JSON).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import zipfile

import numpy as np

from engine import atomic

FORMAT = "reid-ranking"
VERSION = 1
EXTENSIONS = (".json", ".csv", ".npz")
LABELS = ("query_pid", "query_camid", "gallery_pid", "gallery_camid")
CSV_COLUMNS = ("query", "query_path", "rank", "gallery", "gallery_path", "distance")
CSV_LABEL_COLUMNS = LABELS + ("match",)


class RankingFileError(ValueError):
    """A ranking file (or arrays meant for one) breaks the schema; the message names the file and the place."""


@dataclasses.dataclass
class Ranking:
    """The ranked lists of Q queries, k items each at most (see the module docstring for the fields).

    Per query: `query` int64 [Q], `query_path` str [Q], `query_pid`, `query_camid` int64 [Q] or None.
    Per item: `gallery` int64 [Q, k] (-1 pads a shorter list), `gallery_path` str [Q, k], `distance` float32
    [Q, k], `gallery_pid`, `gallery_camid` int64 [Q, k] or None. Labels come all four or none.
    """

    query: np.ndarray
    query_path: np.ndarray
    gallery: np.ndarray
    gallery_path: np.ndarray
    distance: np.ndarray
    query_pid: np.ndarray | None = None
    query_camid: np.ndarray | None = None
    gallery_pid: np.ndarray | None = None
    gallery_camid: np.ndarray | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    origin: str = dataclasses.field(default="<arrays>", compare=False)

    def __post_init__(self):
        self.query = np.asarray(self.query, np.int64).reshape(-1)
        self.query_path = np.asarray(self.query_path, str).reshape(-1)
        self.gallery = np.asarray(self.gallery, np.int64)
        self.gallery_path = np.asarray(self.gallery_path, str)
        self.distance = np.asarray(self.distance, np.float32)
        count = len(self.query)
        if len(np.unique(self.query)) != count:
            raise RankingFileError(f"{self.origin}: a query number appears twice in 'query'")
        if self.gallery.ndim != 2 or len(self.gallery) != count:
            raise RankingFileError(f"{self.origin}: 'gallery' has shape {self.gallery.shape} for {count} queries")
        for name in ("query_path",):
            if getattr(self, name).shape != (count,):
                raise RankingFileError(f"{self.origin}: '{name}' has shape {getattr(self, name).shape} for {count} "
                                       "queries")
        for name in ("gallery_path", "distance"):
            if getattr(self, name).shape != self.gallery.shape:
                raise RankingFileError(f"{self.origin}: '{name}' has shape {getattr(self, name).shape}, 'gallery' "
                                       f"{self.gallery.shape}")
        given = [name for name in LABELS if getattr(self, name) is not None]
        if given and len(given) != len(LABELS):
            raise RankingFileError(f"{self.origin}: labels come as a group: has {given} but not "
                                   f"{[name for name in LABELS if name not in given]}")
        for name in given:
            value = np.asarray(getattr(self, name), np.int64)
            expected = (count,) if name.startswith("query") else self.gallery.shape
            if value.shape != expected:
                raise RankingFileError(f"{self.origin}: '{name}' has shape {value.shape}, expected {expected}")
            setattr(self, name, value)
        present = self.gallery >= 0
        if (present[:, 1:] & ~present[:, :-1]).any():
            raise RankingFileError(f"{self.origin}: a ranked list has a gap (padding before an item)")
        gaps = np.diff(np.where(present, self.distance, np.inf), axis=1)
        if (gaps < 0).any():
            q = int(np.argwhere(gaps < 0)[0][0])
            raise RankingFileError(f"{self.origin}: the distances of query {int(self.query[q])} are not ascending "
                                   "with rank")

    def __len__(self) -> int:
        return len(self.query)

    @property
    def labelled(self) -> bool:
        return self.query_pid is not None

    def matches(self) -> np.ndarray | None:
        """[Q, k] bool: whether each item is of the query's identity; None without labels."""
        if not self.labelled:
            return None
        return (self.gallery_pid == self.query_pid[:, None]) & (self.gallery >= 0)

    def items(self, row: int) -> np.ndarray:
        """The item columns of query position `row` that hold an item (not padding)."""
        return np.flatnonzero(self.gallery[row] >= 0)


def from_top(indices, distances, query_path, gallery_path, query_pid=None, query_camid=None, gallery_pid=None,
             gallery_camid=None, meta: dict | None = None) -> Ranking:
    """A Ranking from top-k `indices` [Q, k] into the gallery rows (-1: none) and their `distances`, given the
    paths (and, for a labelled set, the labels) of every query row and every gallery row."""
    indices = np.asarray(indices, np.int64)
    gallery_path = np.asarray(gallery_path, str)
    if indices.size and indices.max() >= len(gallery_path):
        raise RankingFileError(f"indices point past the {len(gallery_path)} gallery rows")
    present = indices >= 0
    safe = np.where(present, indices, 0)

    def per_item(values, fill):
        return None if values is None else np.where(present, np.asarray(values)[safe], fill)

    labelled = all(v is not None for v in (query_pid, query_camid, gallery_pid, gallery_camid))
    return Ranking(query=np.arange(len(indices)), query_path=query_path, gallery=indices,
                   gallery_path=per_item(gallery_path, ""),
                   distance=np.where(present, distances, np.nan),
                   query_pid=query_pid if labelled else None, query_camid=query_camid if labelled else None,
                   gallery_pid=per_item(gallery_pid, -1) if labelled else None,
                   gallery_camid=per_item(gallery_camid, -1) if labelled else None, meta=dict(meta or {}))


def check_extension(path: str, what: str = "ranking file") -> str:
    """The format of `path` by its extension; RankingFileError naming it otherwise."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise RankingFileError(f"{path}: a {what} ends in {', '.join(EXTENSIONS)}; got {extension or 'none'}")
    return extension


# --------------------------------------------------------------------------------------------------------- write
def _shortest(distance) -> float:
    """The float32 `distance` as the shortest decimal that reads back as the same float32 (0.1, not
    0.10000000149011612)."""
    return float(str(np.float32(distance)))


def _json_text(ranking: Ranking) -> str:
    matches = ranking.matches()
    queries = []
    for row in range(len(ranking)):
        entry = {"query": int(ranking.query[row]), "path": str(ranking.query_path[row])}
        if ranking.labelled:
            entry.update(pid=int(ranking.query_pid[row]), camid=int(ranking.query_camid[row]))
        items = []
        for rank, column in enumerate(ranking.items(row), start=1):
            item = {"rank": rank, "gallery": int(ranking.gallery[row, column]),
                    "path": str(ranking.gallery_path[row, column]),
                    "distance": _shortest(ranking.distance[row, column])}
            if ranking.labelled:
                item.update(pid=int(ranking.gallery_pid[row, column]), camid=int(ranking.gallery_camid[row, column]),
                            match=bool(matches[row, column]))
            items.append(item)
        queries.append({**entry, "ranking": items})
    document = {"format": FORMAT, "version": VERSION, "labelled": ranking.labelled, "meta": ranking.meta,
                "queries": queries}
    return json.dumps(document, indent=1) + "\n"


def _csv_text(ranking: Ranking) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (CSV_LABEL_COLUMNS if ranking.labelled else ()))
    matches = ranking.matches()
    for row in range(len(ranking)):
        for rank, column in enumerate(ranking.items(row), start=1):
            line = [int(ranking.query[row]), ranking.query_path[row], rank, int(ranking.gallery[row, column]),
                    ranking.gallery_path[row, column], _shortest(ranking.distance[row, column])]
            if ranking.labelled:
                line += [int(ranking.query_pid[row]), int(ranking.query_camid[row]),
                         int(ranking.gallery_pid[row, column]), int(ranking.gallery_camid[row, column]),
                         int(matches[row, column])]
            writer.writerow(line)
    return buffer.getvalue()


def write(path: str, ranking: Ranking) -> str:
    """Write `ranking` to `path` in the format of its extension (.json, .csv, .npz), atomically. Returns `path`."""
    extension = check_extension(path)
    if extension == ".json":
        return atomic.write_text(path, _json_text(ranking))
    if extension == ".csv":
        return atomic.write_text(path, _csv_text(ranking))
    arrays = {name: getattr(ranking, name) for name in ("query", "query_path", "gallery", "gallery_path", "distance")
              + (LABELS if ranking.labelled else ())}
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
    return path


# ---------------------------------------------------------------------------------------------------------- read
def _pad(lists: list[list[dict]], name: str, fill, dtype):
    width = max((len(items) for items in lists), default=0)
    out = np.full((len(lists), width), fill, dtype=dtype)
    for row, items in enumerate(lists):
        out[row, :len(items)] = [item[name] for item in items]
    return out


def _assemble(path: str, queries: list[dict], lists: list[list[dict]], labelled: bool, meta: dict) -> Ranking:
    """A Ranking from per-query dicts (query, query_path[, query_pid, query_camid]) and their item dicts (gallery,
    gallery_path, distance[, gallery_pid, gallery_camid]) in rank order."""
    fields = dict(query=[q["query"] for q in queries], query_path=[q["query_path"] for q in queries],
                  gallery=_pad(lists, "gallery", -1, np.int64), gallery_path=_pad(lists, "gallery_path", "", object),
                  distance=_pad(lists, "distance", np.nan, np.float32))
    if labelled:
        fields.update(query_pid=[q["query_pid"] for q in queries], query_camid=[q["query_camid"] for q in queries],
                      gallery_pid=_pad(lists, "gallery_pid", -1, np.int64),
                      gallery_camid=_pad(lists, "gallery_camid", -1, np.int64))
    return Ranking(**fields, meta=meta, origin=path)


def _integer(value, where: str, name: str) -> int:
    """`value` (a JSON integer or a CSV field) as an int; RankingFileError naming `where` and `name` otherwise."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RankingFileError(f"{where}: '{name}' must be an integer, got {value!r}")


def _distance(value, where: str) -> float:
    """`value` as a finite float; RankingFileError naming `where` otherwise."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise RankingFileError(f"{where}: 'distance' must be a finite number, got {value!r}")
    return number


def _read_json(path: str) -> Ranking:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RankingFileError(f"{path}: not a JSON ranking file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RankingFileError(f"{path}: not a ranking file (expected \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise RankingFileError(f"{path}: ranking format version {document.get('version')!r}; this code reads "
                               f"{VERSION}")
    labelled = document.get("labelled")
    if not isinstance(labelled, bool) or not isinstance(document.get("queries"), list):
        raise RankingFileError(f"{path}: needs \"labelled\" (true or false) and a list \"queries\"")
    queries, lists = [], []
    for q, entry in enumerate(document["queries"]):
        where = f"{path}: queries[{q}]"
        keys = ("query", "path", "ranking") + (("pid", "camid") if labelled else ())
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise RankingFileError(f"{where}: needs {', '.join(keys)}")
        query = {"query": _integer(entry["query"], where, "query"), "query_path": str(entry["path"])}
        if labelled:
            query.update(query_pid=_integer(entry["pid"], where, "pid"),
                         query_camid=_integer(entry["camid"], where, "camid"))
        if not isinstance(entry["ranking"], list):
            raise RankingFileError(f"{where}: 'ranking' must be a list of items")
        items = []
        for i, item in enumerate(entry["ranking"]):
            at = f"{where}.ranking[{i}]"
            keys = ("rank", "gallery", "path", "distance") + (("pid", "camid") if labelled else ())
            if not isinstance(item, dict) or any(key not in item for key in keys):
                raise RankingFileError(f"{at}: needs {', '.join(keys)}")
            if _integer(item["rank"], at, "rank") != i + 1:
                raise RankingFileError(f"{at}: rank {item['rank']!r}, expected {i + 1} (items in rank order)")
            parsed = {"gallery": _integer(item["gallery"], at, "gallery"), "gallery_path": str(item["path"]),
                      "distance": _distance(item["distance"], at)}
            if labelled:
                parsed.update(gallery_pid=_integer(item["pid"], at, "pid"),
                              gallery_camid=_integer(item["camid"], at, "camid"))
            items.append(parsed)
        queries.append(query)
        lists.append(items)
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    return _assemble(path, queries, lists, labelled, meta)


def _read_csv(path: str) -> Ranking:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            lines = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise RankingFileError(f"{path}: not UTF-8 text ({error})") from None
    header = [name.strip() for name in lines[0]] if lines else []
    labelled = header == list(CSV_COLUMNS + CSV_LABEL_COLUMNS)
    if header != list(CSV_COLUMNS) and not labelled:
        raise RankingFileError(f"{path}:1: expected the header {','.join(CSV_COLUMNS)}[,{','.join(CSV_LABEL_COLUMNS)}]"
                               f", found {','.join(header) or 'an empty file'!r}")
    queries, lists, position = [], [], {}
    for number, fields in enumerate(lines[1:], start=2):
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != len(header):
            raise RankingFileError(f"{where}: expected {len(header)} fields, got {len(fields)}")
        row = dict(zip(header, fields))
        query = {"query": _integer(row["query"], where, "query"), "query_path": row["query_path"]}
        if labelled:
            query.update(query_pid=_integer(row["query_pid"], where, "query_pid"),
                         query_camid=_integer(row["query_camid"], where, "query_camid"))
        if query["query"] not in position:
            position[query["query"]] = len(queries)
            queries.append({**query, "line": number})
            lists.append([])
        first = queries[position[query["query"]]]
        if any(first[key] != value for key, value in query.items()):
            raise RankingFileError(f"{where}: query {query['query']} differs from its line {first['line']}")
        items = lists[position[query["query"]]]
        if _integer(row["rank"], where, "rank") != len(items) + 1:
            raise RankingFileError(f"{where}: rank {row['rank']}, expected {len(items) + 1} (each query's lines in "
                                   "rank order)")
        item = {"gallery": _integer(row["gallery"], where, "gallery"), "gallery_path": row["gallery_path"],
                "distance": _distance(row["distance"], where)}
        if labelled:
            item.update(gallery_pid=_integer(row["gallery_pid"], where, "gallery_pid"),
                        gallery_camid=_integer(row["gallery_camid"], where, "gallery_camid"))
        items.append(item)
    return _assemble(path, queries, lists, labelled, {})


def _read_npz(path: str) -> Ranking:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise RankingFileError(f"{path}: not a readable .npz ranking file ({error})") from None
    missing = [name for name in ("query", "query_path", "gallery", "gallery_path", "distance") if name not in arrays]
    if missing:
        raise RankingFileError(f"{path}: not a ranking file (acp-rerank --top_list): missing {', '.join(missing)}")
    return Ranking(**arrays, origin=path)


def read(path: str) -> Ranking:
    """The Ranking in `path` (.json, .csv or .npz); RankingFileError naming the file (and place) otherwise."""
    extension = check_extension(path)
    if not os.path.isfile(path):
        raise RankingFileError(f"{path}: ranking file not found")
    return {".json": _read_json, ".csv": _read_csv, ".npz": _read_npz}[extension](path)
