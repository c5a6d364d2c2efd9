"""Ranked lists as pictures: a query image, then its top-k gallery images, one row per ranking (e.g. before and
after re-ranking), correct matches framed green and wrong ones red when labels are known.

Drawn with OpenCV (a core dependency), so it needs neither matplotlib nor a display:

    from experiments.plots import ranked_lists
    ranked_lists.draw(query_path, [("baseline", paths_before, matches_before), ("ACP", paths_after, matches_after)],
                      "query_0.png")

`matches` is a list of booleans (one per gallery image) or None for an unlabelled search (grey frames).
`draw_rankings` draws one such PNG per chosen query from `rerank.rankings.Ranking`s, the ranking files of
`acp-rerank --top_list` read back (the demo and `reid-visrank` use it).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from data.evaluation import drop_ignored
from data.pipeline import read_image
from engine.atomic import atomic_path
from rerank import rankings

TILE = (128, 64)  # (height, width) of every drawn image: Market-1501's crop size
FRAME = 4  # frame width in pixels
GAP = 6  # between gallery tiles
QUERY_GAP = 24  # between the query and its ranked list
TEXT_HEIGHT = 22  # band above each row: its title; above each tile: the rank
MARGIN = 8
# BGR, as OpenCV writes them.
GREEN, RED, GREY, BLUE = (40, 170, 40), (40, 40, 220), (150, 150, 150), (200, 110, 30)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _tile(path: str, colour) -> np.ndarray:
    """The image at `path` resized to TILE, inside a frame of `colour` (BGR), as a (H + 2F, W + 2F, 3) array."""
    image = cv2.resize(read_image(path)[:, :, ::-1], (TILE[1], TILE[0]), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(image, FRAME, FRAME, FRAME, FRAME, cv2.BORDER_CONSTANT, value=colour)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, 1, cv2.LINE_AA)


def frame_colour(match) -> tuple[int, int, int]:
    """Green for a correct match, red for a wrong one, grey when unknown (None)."""
    return GREY if match is None else (GREEN if match else RED)


def draw(query_path: str, rows, output: str, query_title: str = "query") -> str:
    """One PNG: for each row (title, gallery paths, matches or None), the query then the ranked gallery images.

    Args:
      query_path: the query image.
      rows: a sequence of (title, gallery_paths, matches); `matches` holds one bool per path (None: no labels).
        Rows may differ in length; a shorter one leaves blank space.
      output: the PNG to write (atomically; folders are created).
    Returns `output`.
    """
    rows = [(title, list(paths), None if matches is None else list(matches)) for title, paths, matches in rows]
    if not rows:
        raise ValueError("draw: no ranked list to draw")
    for title, paths, matches in rows:
        if matches is not None and len(matches) != len(paths):
            raise ValueError(f"row {title!r}: {len(paths)} gallery paths but {len(matches)} match flags")
    tile_h, tile_w = TILE[0] + 2 * FRAME, TILE[1] + 2 * FRAME
    k = max(len(paths) for _, paths, _ in rows)
    width = 2 * MARGIN + tile_w + QUERY_GAP + k * tile_w + max(k - 1, 0) * GAP
    row_height = 2 * TEXT_HEIGHT + tile_h
    canvas = np.full((2 * MARGIN + len(rows) * row_height, width, 3), 255, np.uint8)
    query = _tile(query_path, BLUE)
    for r, (title, paths, matches) in enumerate(rows):
        top = MARGIN + r * row_height
        _text(canvas, title, MARGIN, top + TEXT_HEIGHT - 6, 0.55)
        y = top + 2 * TEXT_HEIGHT
        canvas[y:y + tile_h, MARGIN:MARGIN + tile_w] = query
        _text(canvas, query_title, MARGIN, y - 6)
        for i, path in enumerate(paths):
            x = MARGIN + tile_w + QUERY_GAP + i * (tile_w + GAP)
            canvas[y:y + tile_h, x:x + tile_w] = _tile(path, frame_colour(None if matches is None else matches[i]))
            _text(canvas, str(i + 1), x + tile_w // 2 - 4, y - 6)
    with atomic_path(output) as temporary:
        if not cv2.imwrite(temporary, canvas):
            raise OSError(f"{output}: OpenCV could not write the PNG")
    return output


def shown(ranking, row: int, num_shown: int) -> np.ndarray:
    """The item columns of query position `row` of a `rerank.rankings.Ranking` to draw: its first `num_shown`,
    after leaving out, when labelled, the items of the query's identity seen by the query's camera (the Market-1501
    protocol ignores them, `data.evaluation.drop_ignored`)."""
    columns = ranking.items(row)
    if ranking.labelled:
        columns = drop_ignored(columns, ranking.query_pid[row], ranking.query_camid[row], ranking.gallery_pid[row],
                               ranking.gallery_camid[row])
    return columns[:num_shown]


def draw_rankings(ranked: dict, queries, output_dir: str, num_shown: int = 10) -> list[str]:
    """One PNG per query in `queries` (`<output_dir>/query_<query>.png`): the query, then one row per ranking.

    Args:
      ranked: {title: `rerank.rankings.Ranking`} (e.g. before / after re-ranking), all of the same queries.
      queries: the `query` numbers to draw (a ranking's `query` field).
      num_shown: gallery images per row (see `shown`).
    Frames are green (the query's identity) or red when every ranking is labelled, grey otherwise.
    Returns the paths written.
    """
    labelled = all(ranking.labelled for ranking in ranked.values())
    matches = {title: ranking.matches() for title, ranking in ranked.items()}
    written = []
    for number in queries:
        lists, query_path = [], None
        for title, ranking in ranked.items():
            (row,) = np.flatnonzero(ranking.query == number)
            columns = shown(ranking, row, num_shown)
            lists.append((title, [str(p) for p in ranking.gallery_path[row, columns]],
                          list(matches[title][row, columns]) if labelled else None))
            query_path = str(ranking.query_path[row])
        output = os.path.join(output_dir, f"query_{int(number):05d}.png")
        written.append(draw(query_path, lists, output, query_title=f"query {int(number)}"))
    return written


def draw_top_lists(paths, titles, output_dir: str, queries=(), num_queries: int = 5, num_shown: int = 10,
                   seed: int = 0) -> list[str]:
    """What `reid-visrank` draws: `draw_rankings` of one or two ranking files (`rerank.rankings`, .json, .csv or
    .npz), titled `titles` (default: the file names), for the `queries` given or `num_queries` drawn with `seed`.
    Returns the PNGs' paths; ValueError naming the flag or the file on unusable input."""
    if not 1 <= len(paths) <= 2:
        raise ValueError(f"--top_lists: give one or two files, got {len(paths)}")
    titles = list(titles) or [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(titles) != len(paths):
        raise ValueError(f"--titles: {len(titles)} titles for {len(paths)} ranking files")
    if len(set(titles)) != len(titles):
        raise ValueError(f"--titles: {titles} repeat a title; each row needs its own")
    loaded = [rankings.read(p) for p in paths]
    first = loaded[0]
    for path, ranking in zip(paths[1:], loaded[1:]):
        if not (np.array_equal(ranking.query, first.query) and np.array_equal(ranking.query_path, first.query_path)):
            raise ValueError(f"{path} ranks other queries than {paths[0]}")
    if queries:
        try:
            queries = [int(q) for q in queries]
        except ValueError:
            raise ValueError(f"--queries {list(queries)}: give query numbers (integers)") from None
        bad = [q for q in queries if q not in set(first.query.tolist())]
        if bad:
            raise ValueError(f"--queries {bad}: not among the {len(first)} queries of {paths[0]}")
    else:
        chosen = np.random.default_rng(seed).choice(len(first), min(num_queries, len(first)), replace=False)
        queries = sorted(int(first.query[row]) for row in chosen)
    return draw_rankings(dict(zip(titles, loaded)), queries, output_dir, num_shown)
