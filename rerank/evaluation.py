"""Exact evaluation of distances at any scale, `data.evaluation` fed one block of query rows at a time: of feature rows
(`evaluate_features`, the distances computed chunk by chunk) and of a re-ranker's output (`evaluate_reranked`)."""
from __future__ import annotations

import numpy as np

from data import evaluation
from rerank.distances import RerankedDistances
from rerank.knn import iter_distance_chunks


def evaluate_features(query_features, gallery_features, q_pids, g_pids, q_camids, g_camids,
                      metric: str = "euclidean", protocol: str = "market1501", max_rank: int = 50, trials: int = 10,
                      seed: int = 0, chunk_size: int | None = None, progress: bool = False) -> dict:
    """`data.evaluation.evaluate` on the distances between feature rows, computed chunk by chunk (never the dense
    matrix).

    Args:
      query_features, gallery_features: (num_query, d) and (num_gallery, d) float arrays.
      metric: a metric of `rerank.knn.METRICS` ("euclidean", "sqeuclidean", "cosine").
      protocol, max_rank, trials, seed, progress: as in `data.evaluation.evaluate`.
      chunk_size: query rows per distance chunk; default `data.evaluation.default_chunk_size(num_gallery)`.
    """
    query_features, gallery_features = np.asarray(query_features), np.asarray(gallery_features)
    acc = evaluation.Accumulator(q_pids, g_pids, q_camids, g_camids, protocol, max_rank, trials, seed)
    if len(query_features) != len(acc.q_pids):
        raise ValueError(f"query_features has {len(query_features)} rows but q_pids has {len(acc.q_pids)}")
    if len(gallery_features) != len(acc.g_pids):
        raise ValueError(f"gallery_features has {len(gallery_features)} rows but g_pids has {len(acc.g_pids)}")
    step = chunk_size or evaluation.default_chunk_size(len(gallery_features))
    chunks = iter_distance_chunks(query_features, gallery_features, metric, step)
    return acc.consume(((start, block) for start, _, block in chunks), progress)


def evaluate_reranked(distances, q_pids, g_pids, q_camids, g_camids, protocol: str = "market1501",
                      max_rank: int = 50, trials: int = 10, seed: int = 0, chunk_size: int | None = None,
                      verbose: int = 0) -> dict:
    """CMC / mAP / mINP (`data.evaluation.evaluate`'s dict) of a re-ranker's output or of a dense distmat.

    A `RerankedDistances` is evaluated block by block (memory O(chunk_size x G)); the result is identical to
    evaluating its dense matrix, because `data.evaluation` handles each query independently (its single-shot draws
    are seeded per query index).
    """
    if not isinstance(distances, RerankedDistances):
        return evaluation.evaluate(np.asarray(distances), q_pids, g_pids, q_camids, g_camids, protocol=protocol,
                                   max_rank=max_rank, trials=trials, seed=seed, chunk_size=chunk_size)
    accumulator = evaluation.Accumulator(q_pids, g_pids, q_camids, g_camids, protocol, max_rank, trials, seed)
    if distances.shape != (len(accumulator.q_pids), len(accumulator.g_pids)):
        raise ValueError(f"re-ranked distances have shape {distances.shape} but q_pids / g_pids give "
                         f"({len(accumulator.q_pids)}, {len(accumulator.g_pids)})")
    return accumulator.consume((start, block) for start, _, block in distances.iter_blocks(chunk_size, verbose))
