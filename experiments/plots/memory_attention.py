"""ACP Fig. 7: the attention weights of memory initialisation (Eq. 9, one row per memory slot over the k1-long
sequence) and of memory refinement (each slot over the k2-long refinement sequence, averaged over heads) for one
query and its top-ranked gallery images.

The sequence is the query followed by its k1 - 1 nearest gallery images under the baseline ranking (cosine
distance of the embeddings), as in the figure ("the query and top-20 gallery images retrieved by the baseline").
Images of the query's identity get a green dot in their top-left corner.

The weights are read from the layers themselves during one forward pass: the softmax sub-layer of
`acp.layers.MemoryInitialization` and the attention softmax of `acp.layers.MemoryRefinement`'s block record what
they return (`recorded_outputs`), so nothing of Eq. 9 is recomputed here.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from acp import model as acp_model
from experiments import plots
from experiments.plots.co_attention import display_image
from rerank.knn import knn

INIT_LAYER = "memory_initialization"
REFINEMENT_LAYER = "memory_refinement"


@contextlib.contextmanager
def recorded_outputs(layer):
    """Within the block, every output of `layer.call` is appended to the yielded list (eager calls)."""
    outputs = []
    original = layer.call

    def call(*args, **kwargs):
        result = original(*args, **kwargs)
        outputs.append(np.asarray(result))
        return result

    layer.call = call
    try:
        yield outputs
    finally:
        del layer.call


def ranked_sequence(features, query_index: int, k1: int) -> np.ndarray:
    """Gallery row indices of the query's k1 - 1 nearest gallery images (cosine distance), nearest first."""
    query, gallery = features.query, features.gallery
    if not 0 <= query_index < len(query):
        raise ValueError(f"query_index={query_index} is outside the {len(query)} query rows of {features.origin}")
    if not 2 <= k1 <= len(gallery) + 1:
        raise ValueError(f"k1={k1} must be in 2..{len(gallery) + 1} (the query and up to every gallery image)")
    _, index = knn(query.embedding[query_index:query_index + 1], gallery.embedding, k1 - 1, "cosine")
    return index[0]


def memory_attention(model, features, query_index: int, k1: int = 21, k2: int = 6) -> dict:
    """{"init" [N, k1], "refinement" [N, min(k2, k1)] or None (model without refinement), "gallery" (gallery row
    indices of the sequence after the query), "same_identity" bool [k1]} for query `query_index` of `features`."""
    if not any(layer.name == INIT_LAYER for layer in model.layers):
        raise ValueError("this ACP model has no Contextual Memory (Table VII Exp-A/B): no memory attention to show")
    gallery_rows = ranked_sequence(features, query_index, k1)
    query, gallery = features.query, features.gallery
    names = [t.name for t in model.inputs if t.name not in (acp_model.MASK_NAME, acp_model.K2_NAME)]
    missing = [name for name in names if getattr(query, name, None) is None]
    if missing:
        raise ValueError(f"{features.origin} lacks {missing}, which this ACP model reads")
    inputs = {name: np.concatenate([getattr(query, name)[query_index:query_index + 1],
                                    getattr(gallery, name)[gallery_rows]])[None] for name in names}
    init_softmax = model.get_layer(INIT_LAYER).softmax
    has_refinement = any(layer.name == REFINEMENT_LAYER for layer in model.layers)
    refinement_softmax = (model.get_layer(REFINEMENT_LAYER).block.attention._softmax if has_refinement else None)
    with recorded_outputs(init_softmax) as init, contextlib.ExitStack() as stack:
        refinement = stack.enter_context(recorded_outputs(refinement_softmax)) if has_refinement else None
        model(acp_model.make_inputs(model, inputs, k2), training=False)
    same = np.concatenate([[True], gallery.pid[gallery_rows] == query.pid[query_index]])
    # The refinement softmax spans all k1 rows, 0 beyond k2 (`acp.layers.MemoryRefinement` masks, not slices).
    return {"init": init[0][0], "refinement": refinement[0][0].mean(axis=0)[:, :k2] if has_refinement else None,
            "gallery": gallery_rows, "same_identity": same}


def _thumbnail(path: str, size) -> np.ndarray | None:
    return display_image(path, size) if path and os.path.isfile(path) else None


def draw(weights: dict, features, query_index: int, output: str, image_size=(128, 64)) -> str:
    """The figure of `memory_attention`'s result into `output` (images where the feature file has paths)."""
    plt = plots.pyplot()
    init, refinement = weights["init"], weights["refinement"]
    slots, length = init.shape
    paths = [features.query.path[query_index]] + [features.gallery.path[i] for i in weights["gallery"]]
    panels = 2 if refinement is not None else 1
    figure = plt.figure(figsize=(max(8.0, 0.55 * length), 1.6 + 0.3 * slots * panels))
    grid = figure.add_gridspec(1 + panels, length, height_ratios=[1.4] + [0.25 * slots] * panels, hspace=0.35)
    height, width = image_size
    for column, path in enumerate(paths):
        axis = figure.add_subplot(grid[0, column])
        image = _thumbnail(str(path), image_size)
        axis.imshow(np.full((height, width, 3), 225, np.uint8) if image is None else image)
        axis.set_title("q" if column == 0 else str(column), fontsize=7)
        if weights["same_identity"][column]:
            axis.plot(0.15 * width, 0.1 * height, "o", color="limegreen", markersize=5, markeredgecolor="white")
        axis.axis("off")
    rows = [("memory initialisation (Eq. 9)", init)]
    if refinement is not None:
        padded = np.full((slots, length), np.nan)
        padded[:, :refinement.shape[1]] = refinement
        rows.append((f"memory refinement (k2 = {refinement.shape[1]}, mean over heads)", padded))
    for panel, (title, values) in enumerate(rows, start=1):
        axis = figure.add_subplot(grid[panel, :])
        axis.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
        axis.set_yticks(range(slots), [f"slot-{i + 1}" for i in range(slots)], fontsize=6)
        axis.set_xticks(range(length), ["q"] + [str(i) for i in range(1, length)], fontsize=6)
        axis.set_title(title, fontsize=8)
    figure.suptitle(f"ACP memory attention for query {query_index} (Fig. 7)", fontsize=10)
    return plots.save(figure, output)
