"""Re-ranking with ACP, Eq. 1: every query and gallery embedding replaced by sum_j s_j f_j over its k1 nearest
neighbours (itself included), s predicted by ACP; then query-gallery distances on the expanded embeddings.

Steps, each chunked so that memory stays linear in N = Q + G (nothing N x N, nothing N x k1 x D at once):
1. one kNN pass over the N stacked query + gallery embeddings (`rerank.nearest`: matmul + top-k per chunk, on
   a GPU when one is visible), each row's own index moved to the front (`rerank.neighbours.probe_first`);
2. ACP on the sequences, `batch_size` at a time: the per-image inputs (f3/f4/f5, or the embedding without
   multi-block fusion) are gathered inside one compiled function (`engine.backend.compiled_inference`: a
   `tf.function`, `jax.jit` or PyTorch without autograd) from tables held once on the device;
3. Eq. 1 with the predicted s (`rerank.expand_embeddings`, chunked);
4. distances between the expanded query and gallery embeddings, produced block by block by the returned
   `rerank.RerankedDistances` (exact evaluation, top-k lists, or a dense matrix only when asked for).

Choices of ours (WORKSPACE.md lists them):
- The expansion uses L2-normalised embeddings f_j and L2-normalises p* again (FastReID's query expansion does the
  same): the predicted s are independent sigmoid outputs that do not sum to 1, and without the second
  normalisation the number of confident neighbours would change the length of p* and hence its distances. The
  re-ranked distance is the Euclidean distance between the unit vectors p* (it ranks like the cosine distance).
- The neighbours are searched with `metric` on the embeddings as given (default "cosine", FastReID's test metric;
  "euclidean" ranks the raw, unnormalised embeddings), the metric the training sequences were mined with.
- k1 defaults to N/C of the gallery, as Sec. IV-B2 sets it, but at least 2 (`rerank.neighbourhood.default_k1`:
  on a gallery of one image per identity Eq. 1 over the image alone would return the baseline). k2 defaults to 6
  (Table IV) and is clipped to k1 (the model clips it too: the refinement sequence is then the whole
  neighbourhood).

ACP registers in `rerank.registry` as "acp" (`RERANKER`) when this module is imported, through the interface of
the classic re-rankers, so `rerank.runner`, `acp-rerank --method=acp`, the experiment runners and the demo run it
by name.
"""
from __future__ import annotations

import functools
from typing import Mapping

import keras
import numpy as np
from absl import logging
from keras import ops

from acp import model as acp_model
from engine.backend import compiled_inference
from features import feature_file as feature_files
from rerank import RerankedDistances, check_features, expand_embeddings, nearest, registry
from rerank.neighbourhood import default_k1, k1_floor_note
from rerank.neighbours import DEFAULT_CHUNK_SIZE, check_count, l2_normalize, probe_first, progress, stack

DEFAULT_K2 = 6
DEFAULT_BATCH_SIZE = 256  # sequences per ACP call: 256 x k1 x 3584 gathered floats (k1 = 25: 92 MB)


def check_inputs(model: keras.Model, tables: Mapping[str, np.ndarray], num_rows: int) -> dict[str, np.ndarray]:
    """The model's per-image input tables as float32, checked: present, one row per image, the model's widths,
    finite. Errors name the input and both sizes."""
    checked = {}
    for tensor in model.inputs:
        name = tensor.name
        if name in (acp_model.MASK_NAME, acp_model.K2_NAME):
            continue
        if name not in tables:
            raise ValueError(f"the ACP model reads '{name}', which the features lack (they have {sorted(tables)})")
        table = np.asarray(tables[name], dtype=np.float32)
        if table.ndim != 2 or len(table) != num_rows:
            raise ValueError(f"'{name}' must be ({num_rows}, width) (one row per query and gallery image), got "
                             f"shape {table.shape}")
        if table.shape[1] != tensor.shape[-1]:
            raise ValueError(f"'{name}' has width {table.shape[1]}, but the ACP model expects {tensor.shape[-1]}")
        bad = ~np.isfinite(table).all(axis=1)
        if bad.any():
            raise ValueError(f"'{name}' row {int(np.argmax(bad))} has a non-finite value (NaN or inf)")
        checked[name] = table
    return checked


@functools.lru_cache(maxsize=4)
def sequence_predictor(model: keras.Model, names: tuple[str, ...], k2: int):
    """A compiled `predict(indices, *tables)` -> s gathering each sequence's per-image inputs (tables in `names`
    order) on the device and running ACP in inference mode, on the active Keras backend.

    Cached per (model, input names, k2): the tables are arguments, not captured constants, so re-ranking split
    after split (the experiments' tables) reuses one compiled function instead of compiling ACP per call.
    """
    def predict(indices, *tables):
        gathered = {name: ops.take(table, indices, axis=0) for name, table in zip(names, tables)}
        return model(acp_model.make_inputs(model, gathered, k2), training=False)

    widths = {tensor.name: tensor.shape[-1] for tensor in model.inputs}
    signature = [((None, None), "int32")] + [((None, widths[name]), "float32") for name in names]
    return compiled_inference(model, predict, signature)


def predict_correlations(model: keras.Model, tables: Mapping[str, np.ndarray], neighbour_idx: np.ndarray,
                         k2: int = DEFAULT_K2, batch_size: int = DEFAULT_BATCH_SIZE, verbose: int = 0) -> np.ndarray:
    """s (M, k1) float32 for the sequences `neighbour_idx` (M, k1) into the per-image `tables` (N, D_j), by name.

    The tables are copied to the device once; each batch of sequences is gathered there, so memory is
    O(N x D + batch_size x k1 x D).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    names = tuple(sorted(tables))
    device_tables = [ops.convert_to_tensor(tables[name]) for name in names]
    predict = sequence_predictor(model, names, int(k2))
    # int32 indices: N < 2^31, and JAX (64-bit types off by default) would narrow int64 with a warning.
    neighbour_idx = np.asarray(neighbour_idx, dtype=np.int32)
    out = np.empty(neighbour_idx.shape, dtype=np.float32)
    bar = progress(len(neighbour_idx), verbose, "sequences")
    for start in range(0, len(neighbour_idx), batch_size):
        stop = min(start + batch_size, len(neighbour_idx))
        out[start:stop] = ops.convert_to_numpy(predict(ops.convert_to_tensor(neighbour_idx[start:stop]),
                                                       *device_tables))
        bar.update(stop)
    return out


def expand(embeddings: np.ndarray, tables: Mapping[str, np.ndarray], model: keras.Model, k1: int,
           k2: int = DEFAULT_K2, metric: str = "cosine", batch_size: int = DEFAULT_BATCH_SIZE,
           chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> dict[str, np.ndarray]:
    """Eq. 1 for every row of `embeddings` (N, d) over its k1 nearest rows: returns {"expanded" (N, d) unit rows,
    "neighbours" (N, k1) int64, "correlations" (N, k1) float32}.

    `tables`: the ACP model's per-image inputs for the same N rows (see `check_inputs`).
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    k1 = check_count("k1", k1, 1, len(embeddings), "neighbours among the query + gallery embeddings")
    k2 = min(check_count("k2", k2, 1, np.iinfo(np.int32).max, "refinement length"), k1)
    tables = check_inputs(model, tables, len(embeddings))
    _, neighbours, _ = nearest(embeddings, k1, metric, chunk_size, verbose=verbose)
    neighbours = probe_first(neighbours, np.arange(len(embeddings)))
    unit = l2_normalize(embeddings)
    correlations = predict_correlations(model, tables, neighbours, k2, batch_size, verbose)
    expanded = l2_normalize(expand_embeddings(unit, neighbours, correlations, chunk_size))
    return {"expanded": expanded, "neighbours": neighbours, "correlations": correlations}


def acp_rerank(query, gallery, model: keras.Model, k1: int, k2: int = DEFAULT_K2,
               query_inputs: Mapping[str, np.ndarray] | None = None,
               gallery_inputs: Mapping[str, np.ndarray] | None = None, metric: str = "cosine",
               batch_size: int = DEFAULT_BATCH_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE,
               verbose: int = 0) -> RerankedDistances:
    """ACP re-ranking of query (Q, d) x gallery (G, d) embeddings (Eq. 1 for both sets, then new distances).

    Args:
      query, gallery: the baseline embeddings.
      model: a trained ACP model (`acp.checkpoint.restore_model`).
      k1: neighbourhood size, itself included (`rerank.neighbourhood.default_k1(gallery_pids)` for the paper's N/C).
      k2: refinement length (Table IV: 6).
      query_inputs, gallery_inputs: the model's per-image inputs by name (f3, f4, f5 for multi-block fusion);
        omitted, the embeddings are the input `embedding` (models without fusion).
      metric: neighbour-search distance; batch_size: sequences per ACP call; chunk_size: rows per kNN chunk.

    Returns a `RerankedDistances` over the expanded embeddings (Euclidean between unit vectors).
    """
    query, gallery = check_features(query, gallery)
    query_inputs = {acp_model.EMBEDDING_NAME: query} if query_inputs is None else dict(query_inputs)
    gallery_inputs = {acp_model.EMBEDDING_NAME: gallery} if gallery_inputs is None else dict(gallery_inputs)
    if set(query_inputs) != set(gallery_inputs):
        raise ValueError(f"query inputs {sorted(query_inputs)} and gallery inputs {sorted(gallery_inputs)} differ")
    tables = {name: stack(np.asarray(query_inputs[name], np.float32), np.asarray(gallery_inputs[name], np.float32))
              for name in query_inputs}
    expanded = expand(stack(query, gallery), tables, model, k1, k2, metric, batch_size, chunk_size,
                      verbose)["expanded"]
    return RerankedDistances(expanded[:len(query)], expanded[len(query):], "euclidean")


def rerank_feature_sets(query: feature_files.FeatureSet, gallery: feature_files.FeatureSet, model: keras.Model,
                        k1: int | None = None, k2: int = DEFAULT_K2, metric: str = "cosine",
                        batch_size: int = DEFAULT_BATCH_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE,
                        verbose: int = 0) -> tuple[RerankedDistances, int]:
    """ACP re-ranking of the query and gallery rows of a feature file (e.g. `features.query`, `features.gallery`);
    k1 None = `default_k1` of the gallery. Returns (distances, the k1 used).

    The model's inputs come from the rows: f3/f4/f5 with multi-block fusion (a clear error when the file has none),
    else the embedding.
    """
    if not len(query) or not len(gallery):
        raise ValueError(f"{query.origin}: needs query and gallery rows, has {len(query)} and {len(gallery)}")
    if k1 is None:
        k1, note = default_k1(gallery.pid), k1_floor_note("k1", gallery.pid)
        if note:
            logging.warning("ACP re-ranking: %s", note)
    names = [t.name for t in model.inputs if t.name not in (acp_model.MASK_NAME, acp_model.K2_NAME)]
    if any(name in feature_files.BLOCK_NAMES for name in names) and not gallery.has_multi_block:
        raise ValueError(f"{gallery.origin}: the ACP model uses multi-block fusion, but the file has no f3, f4, f5 "
                         "(train a model with --override=use_fusion=false for such files)")
    inputs = [{name: getattr(part, name) for name in names} for part in (query, gallery)]
    return acp_rerank(query.embedding, gallery.embedding, model, k1, k2, *inputs, metric=metric,
                      batch_size=batch_size, chunk_size=chunk_size, verbose=verbose), k1


def _run(query, gallery, params, model=None, metric="cosine", verbose=0) -> RerankedDistances:
    """`rerank.registry`'s interface: `rerank_feature_sets` with the resolved parameters."""
    if model is None:
        raise ValueError("--method=acp needs a trained model: pass --checkpoint (an acp-train --train_dir)")
    result, _ = rerank_feature_sets(query, gallery, model, metric=metric, verbose=verbose, **params)
    return result


RERANKER = registry.register(registry.Reranker(
    "acp", _run, defaults={"k1": None, "k2": DEFAULT_K2, "batch_size": DEFAULT_BATCH_SIZE,
                           "chunk_size": DEFAULT_CHUNK_SIZE},
    first_order=("k1",), unchanged_at_one="k1", k2_within_k1=True, needs_model=True, uses_metric=True))
