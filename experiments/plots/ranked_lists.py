"""Ranked lists as pictures: a query image, then its top-k gallery images, one row per ranking (e.g. before and
after re-ranking), correct matches framed green and wrong ones red when labels are known.

Drawn with OpenCV (a core dependency), so it needs neither matplotlib nor a display:

    from experiments.plots import ranked_lists
    ranked_lists.draw(query_path, [("baseline", paths_before, matches_before), ("ACP", paths_after, matches_after)],
                      "query_0.png")

`matches` is a list of booleans (one per gallery image) or None for an unlabelled search (grey frames).
`draw_queries` draws one such PNG per chosen query from ranked index lists (the demo and `reid-visrank` use it).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from data.pipeline import read_image
from engine.atomic import atomic_path

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


def draw_queries(query_paths, gallery_paths, rankings: dict, queries, output_dir: str, query_pids=None,
                 gallery_pids=None) -> list[str]:
    """One PNG per query row in `queries` (`<output_dir>/query_<row>.png`): the query, then one row per ranking.

    Args:
      query_paths, gallery_paths: image paths of the query and gallery rows.
      rankings: {title: [Q, k] gallery indices in rank order, -1 for padding} (e.g. before / after re-ranking).
      queries: the query rows to draw.
      query_pids, gallery_pids: labels; with both, each gallery image is framed green (the query's identity) or red.
    Returns the paths written.
    """
    labelled = query_pids is not None and gallery_pids is not None
    gallery_paths = np.asarray(gallery_paths)
    written = []
    for q in queries:
        lists = []
        for title, indices in rankings.items():
            kept = np.asarray(indices[q])
            kept = kept[kept >= 0]
            matches = list(np.asarray(gallery_pids)[kept] == query_pids[q]) if labelled else None
            lists.append((title, [str(p) for p in gallery_paths[kept]], matches))
        output = os.path.join(output_dir, f"query_{int(q):05d}.png")
        written.append(draw(str(query_paths[q]), lists, output, query_title=f"query {int(q)}"))
    return written
