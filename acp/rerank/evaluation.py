"""Exact evaluation of re-ranked distances at any scale: `data.evaluation` fed one block of query rows at a time."""
from __future__ import annotations

import numpy as np

from acp.rerank.distances import RerankedDistances
from data import evaluation


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
    accumulator = evaluation._Accumulator(q_pids, g_pids, q_camids, g_camids, protocol, max_rank, trials, seed)
    if distances.shape != (len(accumulator.q_pids), len(accumulator.g_pids)):
        raise ValueError(f"re-ranked distances have shape {distances.shape} but q_pids / g_pids give "
                         f"({len(accumulator.q_pids)}, {len(accumulator.g_pids)})")
    for start, _, block in distances.iter_blocks(chunk_size, verbose):
        accumulator.add(start, block)
    return accumulator.result()
