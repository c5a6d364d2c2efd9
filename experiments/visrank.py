r"""Ranked lists as pictures (`reid-visrank`): for chosen queries, the query image and its top gallery images, one
PNG per query, from one ranking or two side by side (e.g. before and after re-ranking); with labels, correct
matches are framed green and wrong ones red.

    acp-rerank --features=F.npz --method=none --top_list=before.npz
    acp-rerank --features=F.npz --method=acp --checkpoint=runs/acp --top_list=after.npz
    reid-visrank --top_lists=before.npz,after.npz --titles=baseline,ACP --output_dir=pictures --num_queries=5

A top list is the `.npz` `acp-rerank --top_list` writes: `indices` [Q, k] into the gallery rows, `query_path`,
`gallery_path`, and optionally `query_pid`, `gallery_pid`, `query_camid`, `gallery_camid`. Two lists must rank the
same queries. With pids and camids, gallery images of the query's identity seen by the query's camera are left out,
as the Market-1501 evaluation protocol ignores them.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from data.evaluation import drop_ignored  # noqa: E402
from engine.flags import declare_once  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("top_lists", [], "One or two top-list .npz files (acp-rerank --top_list), drawn as rows.")
flags.DEFINE_list("titles", [], "A title per top list (default: the file names).")
flags.DEFINE_list("queries", [], "Query rows to draw (0-based); default: --num_queries drawn at random with --seed.")
flags.DEFINE_integer("num_queries", 5, "Queries drawn at random when --queries is not given.", lower_bound=1)
flags.DEFINE_integer("num_shown", 10, "Gallery images shown per ranked list.", lower_bound=1)
declare_once(flags.DEFINE_string, "output_dir", "pictures", "Folder the PNGs go to (query_<row>.png).")
declare_once(flags.DEFINE_integer, "seed", 0, "Seed of the random choice of queries.")

REQUIRED = ("indices", "query_path", "gallery_path")


def load_top_list(path: str) -> dict:
    """The arrays of a top-list file; ValueError naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable top-list .npz ({error})") from None
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise ValueError(f"{path}: not a top list (acp-rerank --top_list): missing {', '.join(missing)}")
    if arrays["indices"].ndim != 2 or len(arrays["indices"]) != len(arrays["query_path"]):
        raise ValueError(f"{path}: indices have shape {arrays['indices'].shape} for {len(arrays['query_path'])} "
                         "queries")
    if arrays["indices"].size and arrays["indices"].max() >= len(arrays["gallery_path"]):
        raise ValueError(f"{path}: indices point past the {len(arrays['gallery_path'])} gallery rows")
    return arrays


def shown_indices(top: dict, num_shown: int) -> np.ndarray:
    """The first `num_shown` gallery indices per query, [Q, num_shown] padded with -1, after leaving out the query's
    identity in the query's camera when the list has pids and camids."""
    indices = top["indices"]
    labels = ("query_pid", "gallery_pid", "query_camid", "gallery_camid")
    out = np.full((len(indices), num_shown), -1, dtype=np.int64)
    for q, row in enumerate(indices):
        if all(name in top for name in labels):
            row = drop_ignored(row, top["query_pid"][q], top["query_camid"][q], top["gallery_pid"],
                               top["gallery_camid"])
        out[q, :min(num_shown, len(row))] = row[:num_shown]
    return out


def draw_top_lists(paths, titles, output_dir: str, queries=(), num_queries: int = 5, num_shown: int = 10,
                   seed: int = 0) -> list[str]:
    """Draw the PNGs (see the module docstring); returns their paths. ValueError on unusable input."""
    from experiments.plots import ranked_lists

    if not 1 <= len(paths) <= 2:
        raise ValueError(f"--top_lists: give one or two files, got {len(paths)}")
    titles = list(titles) or [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(titles) != len(paths):
        raise ValueError(f"--titles: {len(titles)} titles for {len(paths)} top lists")
    tops = [load_top_list(p) for p in paths]
    first = tops[0]
    for path, top in zip(paths[1:], tops[1:]):
        for subset in ("query", "gallery"):
            if not np.array_equal(top[f"{subset}_path"], first[f"{subset}_path"]):
                raise ValueError(f"{path} ranks other {subset} images than {paths[0]}")
    count = len(first["query_path"])
    if queries:
        queries = [int(q) for q in queries]
        bad = [q for q in queries if not 0 <= q < count]
        if bad:
            raise ValueError(f"--queries {bad}: the lists hold query rows 0..{count - 1}")
    else:
        queries = sorted(np.random.default_rng(seed).choice(count, min(num_queries, count), replace=False).tolist())
    labelled = all("query_pid" in t and "gallery_pid" in t for t in tops)
    rankings = {title: shown_indices(top, num_shown) for title, top in zip(titles, tops)}
    return ranked_lists.draw_queries(first["query_path"], first["gallery_path"], rankings, queries, output_dir,
                                     first.get("query_pid") if labelled else None,
                                     first.get("gallery_pid") if labelled else None)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        written = draw_top_lists(FLAGS.top_lists, FLAGS.titles, FLAGS.output_dir, FLAGS.queries, FLAGS.num_queries,
                                 FLAGS.num_shown, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    for path in written:
        print(path)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)
