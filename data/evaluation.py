"""Re-identification evaluation protocols: CMC, mAP and mINP from distances (from features, computed chunk by chunk:
`rerank.evaluation.evaluate_features`).

Protocols (`Record.protocol` names the one a dataset uses):

- `"market1501"` (Market-1501, DukeMTMC-reID, MSMT17, CUHK03 new protocol, VeRi-776, VERI-Wild): for each query,
  the gallery images with the query's identity AND the query's camera are removed from its ranking; a query left
  without any true match is skipped and counted in `num_skipped`. Junk images (pid -1) never reach here (readers
  drop them); distractors (pid 0) are ordinary negatives.
- `"vehicleid"` (VehicleID): nothing is removed (no camera rule); the reader already builds the gallery.
- `"single_shot"` (CUHK03 classic / CUHK01, as in KVM-MN Sec. "Experiments"): after the same-identity-same-camera
  removal above, each trial samples one gallery image per identity uniformly at random, and CMC is computed on that
  sampled gallery; the CMC is averaged over `trials` trials (10 by default). This follows the facts of torchreid's
  `eval_cuhk03`; as there, mAP and mINP of this protocol come from the full (unsampled) ranking after removal.

Definitions (all per evaluated query, then averaged over evaluated queries):
- CMC(k) = 1 if a true match is among the first k of the ranking.
- AP is non-interpolated: the mean, over the query's true matches, of the precision at the rank of each match
  (as torchreid and FastReID compute it).
- INP = (number of true matches) / (rank of the hardest, i.e. last, true match); mINP is its mean (Ye et al.,
  "Deep Learning for Person Re-identification: A Survey and Outlook", the AGW baseline).

Choices of ours, documented here:
- Ties in distance are broken by gallery index (the ranking is `argsort(..., kind="stable")`), so results are
  deterministic; torchreid's default `argsort` breaks ties arbitrarily.
- `cmc` always has `max_rank` entries. Ranks beyond the size of a query's (kept or sampled) gallery repeat the last
  value, which is 1.0 because every evaluated query has a match; torchreid instead truncates `max_rank` to the
  gallery size.
- `single_shot` draws its random numbers from `numpy.random.default_rng([seed, query_index])`, so results depend
  on `seed` only, never on how queries are chunked.

How it is computed: a query's ranking is never materialised. Each chunk of query rows is sorted once (`np.sort`,
vectorised over the chunk); the rank of each same-identity gallery image is then its count of strictly smaller
distances (a binary search in the sorted row) plus the tied ones with a lower gallery index. Everything after that
touches only the query's same-identity images, so the cost is one row sort per query and the memory is
O(chunk x gallery).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from engine.progress import Progress


PROTOCOLS = ("market1501", "single_shot", "vehicleid")

# Elements of one query chunk (the chunk's distances plus their sorted copy): 4M float32 = 2 x 16 MB.
_CHUNK_ELEMENTS = 1 << 22


def default_chunk_size(num_gallery: int) -> int:
    """Query rows per chunk so that one chunk holds about 4M distances whatever the gallery size."""
    return max(1, _CHUNK_ELEMENTS // max(1, num_gallery))


def _labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


class Accumulator:
    """Per-query statistics of one evaluation, fed one chunk of query rows at a time: how every evaluation of a
    ranking given block by block (features' distance chunks, re-rankers' blocks) reaches `evaluate`'s result."""

    def __init__(self, q_pids, g_pids, q_camids, g_camids, protocol: str, max_rank: int, trials: int, seed: int):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        if int(max_rank) != max_rank or max_rank < 1:
            raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
        if protocol == "single_shot" and (int(trials) != trials or trials < 1):
            raise ValueError(f"trials must be a positive integer, got {trials!r}")
        self.q_pids, self.g_pids = _labels(q_pids, "q_pids"), _labels(g_pids, "g_pids")
        self.q_camids, self.g_camids = _labels(q_camids, "q_camids"), _labels(g_camids, "g_camids")
        if len(self.q_camids) != len(self.q_pids):
            raise ValueError(f"q_camids has {len(self.q_camids)} entries but q_pids has {len(self.q_pids)}")
        if len(self.g_camids) != len(self.g_pids):
            raise ValueError(f"g_camids has {len(self.g_camids)} entries but g_pids has {len(self.g_pids)}")
        if not len(self.q_pids) or not len(self.g_pids):
            raise ValueError(f"nothing to evaluate: {len(self.q_pids)} queries, {len(self.g_pids)} gallery items")
        self.protocol, self.max_rank, self.trials, self.seed = protocol, int(max_rank), int(trials), seed
        # Gallery indices grouped by identity, ascending within each group.
        self._by_pid = np.argsort(self.g_pids, kind="stable")
        self._pids, self._starts, self._sizes = np.unique(self.g_pids[self._by_pid], return_index=True,
                                                          return_counts=True)
        group = np.minimum(np.searchsorted(self._pids, self.q_pids), len(self._pids) - 1)
        self._q_group = np.where(self._pids[group] == self.q_pids, group, -1)
        # first_rank_counts[r] = evaluated queries whose first true match is at rank r + 1 (last bin: beyond max_rank).
        self._first_rank_counts = np.zeros(self.max_rank + 1, dtype=np.float64)
        self._ap_sum = self._inp_sum = 0.0
        self._evaluated = self._skipped = 0

    def add(self, start: int, block: np.ndarray) -> None:
        """Account for queries start .. start + len(block) - 1, whose distances to the gallery are `block`."""
        if np.isnan(block).any():
            row = start + int(np.nonzero(np.isnan(block).any(axis=1))[0][0])
            raise ValueError(f"distances contain NaN (first in query row {row}); check distmat or the features")
        sorted_rows = np.sort(block, axis=1)
        for offset, row in enumerate(block):
            self._add_query(start + offset, row, sorted_rows[offset])

    def _add_query(self, q: int, row: np.ndarray, sorted_row: np.ndarray) -> None:
        group = self._q_group[q]
        if group < 0:
            self._skipped += 1
            return
        same_pid = self._by_pid[self._starts[group]:self._starts[group] + self._sizes[group]]
        positions = _stable_positions(row, sorted_row, same_pid)
        removed = (self.g_camids[same_pid] == self.q_camids[q]) if self.protocol != "vehicleid" else None
        if removed is not None and removed.all():
            self._skipped += 1
            return
        kept_ranks = _kept_ranks(positions, removed)
        hits = np.arange(1, len(kept_ranks) + 1)
        self._ap_sum += float(np.mean(hits / kept_ranks))
        self._inp_sum += len(kept_ranks) / float(kept_ranks[-1])
        self._evaluated += 1
        if self.protocol == "single_shot":
            matches = same_pid if removed is None else same_pid[~removed]
            self._first_rank_counts += self._sampled_first_rank_counts(q, row, group, matches) / self.trials
        else:
            self._first_rank_counts[min(kept_ranks[0], self.max_rank + 1) - 1] += 1

    def _sampled_first_rank_counts(self, q: int, row: np.ndarray, group: int, matches: np.ndarray) -> np.ndarray:
        """Histogram over `trials` single-shot galleries of the rank of the query's (only) true match."""
        rng = np.random.default_rng([self.seed, q])
        draws = rng.random((self.trials, len(self._pids)))
        picks = self._by_pid[self._starts + np.floor(draws * self._sizes).astype(np.int64)]
        picks[:, group] = matches[np.floor(draws[:, group] * len(matches)).astype(np.int64)]
        dist = row[picks]
        match_dist, match_index = dist[:, group:group + 1], picks[:, group:group + 1]
        before = (dist < match_dist) | ((dist == match_dist) & (picks < match_index))
        ranks = before.sum(axis=1) + 1
        return np.bincount(np.minimum(ranks, self.max_rank + 1) - 1, minlength=self.max_rank + 1)

    def consume(self, chunks: Iterable[tuple[int, np.ndarray]], progress: bool = False) -> dict:
        """`add` every (first query row, distance block) of `chunks`, then the `result`."""
        bar = Progress(len(self.q_pids), unit="query") if progress else None
        for start, block in chunks:
            self.add(start, block)
            if bar is not None:
                bar.update(start + len(block))
        return self.result()

    def result(self) -> dict:
        if not self._evaluated:
            raise ValueError(f"no query has a true match in the gallery under protocol {self.protocol!r} "
                             f"({self._skipped} queries skipped); check q_pids / g_pids / camids")
        cmc = np.cumsum(self._first_rank_counts[:self.max_rank]) / self._evaluated
        return {"cmc": cmc, "mAP": self._ap_sum / self._evaluated, "mINP": self._inp_sum / self._evaluated,
                "num_queries": self._evaluated, "num_skipped": self._skipped}


def _stable_positions(row: np.ndarray, sorted_row: np.ndarray, items: np.ndarray) -> np.ndarray:
    """0-based positions of gallery `items` (ascending indices) in the ranking argsort(row, kind="stable")."""
    values = row[items]
    positions = np.searchsorted(sorted_row, values, side="left")
    tied = np.nonzero(np.searchsorted(sorted_row, values, side="right") - positions > 1)[0]
    for t in tied:
        positions[t] += np.count_nonzero(row[:items[t]] == values[t])
    return positions


def _kept_ranks(positions: np.ndarray, removed: np.ndarray | None) -> np.ndarray:
    """1-based ranks, ascending, of the true matches once the `removed` items leave the ranking."""
    order = np.argsort(positions)
    positions = positions[order]
    if removed is None:
        return positions + 1
    removed = removed[order]
    # For a kept item, the running count of removed items equals the removed items ranked before it.
    return (positions - np.cumsum(removed))[~removed] + 1


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, protocol: str = "market1501", max_rank: int = 50,
             trials: int = 10, seed: int = 0, chunk_size: int | None = None, progress: bool = False) -> dict:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar) under `protocol`.

    Args:
      distmat: (num_query, num_gallery) distances, any float dtype, no NaN.
      q_pids, g_pids, q_camids, g_camids: 1-D integer identities and cameras of queries and gallery items.
      protocol: one of `PROTOCOLS` (see the module docstring).
      max_rank: length of the returned CMC.
      trials: random single-shot galleries averaged by `"single_shot"` (ignored otherwise).
      seed: seed of those draws.
      chunk_size: query rows sorted at once (memory O(chunk_size x num_gallery)); default `default_chunk_size`.
      progress: show a progress bar over queries.

    Returns:
      dict with `cmc` (float64 array, CMC at ranks 1..max_rank), `mAP`, `mINP` (floats in [0, 1]),
      `num_queries` (queries evaluated) and `num_skipped` (queries without a true match after removal).

    Raises:
      ValueError naming the argument on shape mismatches, NaN distances, an unknown protocol, or when no query
      has a true match.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2 or not np.issubdtype(distmat.dtype, np.number):
        raise ValueError(f"distmat must be a 2-D numeric array, got shape {distmat.shape} dtype {distmat.dtype}")
    acc = Accumulator(q_pids, g_pids, q_camids, g_camids, protocol, max_rank, trials, seed)
    if distmat.shape != (len(acc.q_pids), len(acc.g_pids)):
        raise ValueError(f"distmat has shape {distmat.shape} but q_pids / g_pids give "
                         f"({len(acc.q_pids)}, {len(acc.g_pids)})")
    step = chunk_size or default_chunk_size(distmat.shape[1])
    return acc.consume(((start, distmat[start:start + step]) for start in range(0, len(distmat), step)), progress)


def format_results(result: dict, ranks=(1, 5, 10, 20)) -> str:
    """One line per metric, the way re-ID papers report them (percentages)."""
    lines = [f"mAP:  {100 * result['mAP']:.1f}%", f"mINP: {100 * result['mINP']:.1f}%"]
    lines += [f"Rank-{r:<3d} {100 * result['cmc'][r - 1]:.1f}%" for r in ranks if r <= len(result["cmc"])]
    lines.append(f"({result['num_queries']} queries evaluated, {result['num_skipped']} skipped)")
    return "\n".join(lines)


def drop_ignored(order: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray,
                 protocol: str = "market1501") -> np.ndarray:
    """The gallery indices of `order` (a ranking) without those the protocol ignores for this query: under
    `market1501` and `single_shot`, the items of the query's identity seen by the query's camera."""
    if protocol == "vehicleid":
        return order
    return order[~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))]


def ranked_top_k(distmat, k: int, q_pids=None, g_pids=None, q_camids=None, g_camids=None,
                 protocol: str = "market1501") -> np.ndarray:
    """The first `k` gallery indices of each query's ranking, [Q, k] int64, in rank order (ties by gallery index),
    as the evaluation sees the ranking: with labels, the `market1501` and `single_shot` protocols first remove the
    gallery items of the query's identity seen by the query's camera (they count neither as hits nor as misses).
    Without labels nothing is removed. Rows with fewer than `k` kept items are padded with -1.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D, got shape {distmat.shape}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    labelled = q_pids is not None and g_pids is not None and q_camids is not None and g_camids is not None
    if labelled:
        acc = Accumulator(q_pids, g_pids, q_camids, g_camids, protocol, 1, 1, 0)  # checks the labels
        if distmat.shape != (len(acc.q_pids), len(acc.g_pids)):
            raise ValueError(f"distmat has shape {distmat.shape} but q_pids / g_pids give "
                             f"({len(acc.q_pids)}, {len(acc.g_pids)})")
    top = np.full((len(distmat), k), -1, dtype=np.int64)
    for q, row in enumerate(distmat):
        order = np.argsort(row, kind="stable")
        if labelled:
            order = drop_ignored(order, acc.q_pids[q], acc.q_camids[q], acc.g_pids, acc.g_camids, protocol)
        top[q, :min(k, len(order))] = order[:k]
    return top
