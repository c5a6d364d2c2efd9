"""Training sequences of ACP (Sec. IV-B2, "To construct a training sequence").

The paper: find the K = 1000 nearest neighbours of each training image; among them are m correct matches and
K - m false matches; randomly select l1 samples from the union of the correct matches and the first several false
matches; the refinement length is l2; 16 sequences form a batch.

How we read it (choices of ours, each a field of `SequenceConfig`):
- A sequence is the probe followed by the l1 selected samples, so it has 1 + l1 rows, like the test-time sequence
  of Eq. 1 (the probe's k1 nearest neighbours, itself first). The selected samples are ordered by their distance to
  the probe (their rank in the probe's neighbour list), because ACP's inputs are ranked lists: at test time the
  first k2 rows are the refinement sequence R, and training must show the network the same kind of order.
- "The first several false matches" are the `num_false` false matches ranked highest (default l1 = 24, so a
  probe with no correct match in its neighbourhood still fills a whole sequence with its hardest negatives).
- The probe's K neighbours are found among the other training images (the probe itself is excluded from the K
  and is always row 0). K is capped at N - 1 on small sets, with a warning.
- Labels: 1 = same identity as the probe (the probe row included), 0 = not; a probe whose pool holds fewer than
  l1 samples gives a shorter sequence, padded to 1 + l1 with label `acp.losses.IGNORE_LABEL` and mask False.
- Distances: `metric` (default "cosine", FastReID's test metric, which ranks like the Euclidean distance between
  L2-normalised embeddings) on the baseline embedding, the feature whose neighbours ACP sees at test time.
- l1 = 24 gives 25-row sequences, the k1 of Table VII's experiments; l2 = 6 is Table IV's k2. The paper gives
  neither training value.
- An epoch is one pass over the training probes in a seeded permutation: `len(train) // batch_size` steps (at
  least one).

Scale: the neighbour search is one chunked pass (`rerank.knn.iter_knn_chunks`: a top-K per chunk, on a GPU when
one is visible); only each probe's candidate pool is kept (its correct matches within the K plus
`num_false` false ones), so memory is O(chunk x N + N x pool), never N x K or N x N. The pools are cached next to
the checkpoints (`load_or_mine_pools`), keyed by a digest of the features and the settings.

Resumable and deterministic: the sequences of step t are a pure function of (seed, t), so a restored run sees
exactly the batches an uninterrupted run would (the engine's `steps_dataset` contract); no sampler state needs
saving beyond the step counter.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Mapping, NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from acp.losses import IGNORE_LABEL
from engine import atomic
from engine.progress import Progress
from rerank.knn import METRICS, iter_knn_chunks
from rerank.neighbours import probe_first

DEFAULT_CHUNK_SIZE = 512
POOLS_FILE = "sequence_pools.npz"


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """How training sequences are drawn (see the module docstring for the paper's wording and our reading).

    num_neighbours: K, neighbours searched per probe (1000 in the paper; capped at N - 1).
    length: l1, samples after the probe (sequence rows = 1 + l1).
    num_false: how many of the first false matches join the correct matches in the pool.
    refinement_length: l2, the k2 input of ACP during training.
    metric: distance of the neighbour search, one of `rerank.knn.METRICS`.
    """

    num_neighbours: int = 1000
    length: int = 24
    num_false: int = 24
    refinement_length: int = 6
    metric: str = "cosine"

    def __post_init__(self):
        for name in ("num_neighbours", "length", "refinement_length"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"SequenceConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if int(self.num_false) != self.num_false or self.num_false < 0:
            raise ValueError(f"SequenceConfig.num_false must be a non-negative integer, got {self.num_false!r}")
        if self.metric not in METRICS:
            raise ValueError(f"SequenceConfig.metric={self.metric!r}: expected one of {METRICS}")

    @property
    def sequence_length(self) -> int:
        return 1 + self.length


class CandidatePools(NamedTuple):
    """Per probe, the samples a sequence may draw from, in CSR layout (probe i owns rows offsets[i]:offsets[i+1]).

    members: int64 training indices, in the probe's neighbour-list order (nearest first).
    matches: bool, whether each member has the probe's identity.
    offsets: int64 (N + 1,).
    num_neighbours: the K actually searched (after capping).
    """

    members: np.ndarray
    matches: np.ndarray
    offsets: np.ndarray
    num_neighbours: int

    def pool(self, probe: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.offsets[probe], self.offsets[probe + 1]
        return self.members[start:stop], self.matches[start:stop]

    @property
    def num_probes(self) -> int:
        return len(self.offsets) - 1


def capped_neighbours(requested: int, num_rows: int) -> int:
    """K capped at N - 1 (the neighbours a probe can have), with a warning when it had to be lowered."""
    if num_rows < 2:
        raise ValueError(f"training sequences need at least 2 training images, got {num_rows}")
    if requested > num_rows - 1:
        logging.warning("num_neighbours=%d exceeds the %d other training images: using K=%d", requested,
                        num_rows - 1, num_rows - 1)
        return num_rows - 1
    return requested


def mine_pools(embedding: np.ndarray, pids: np.ndarray, config: SequenceConfig = SequenceConfig(),
               chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> CandidatePools:
    """The candidate pool of every training probe: its correct matches among its K nearest neighbours and its
    first `config.num_false` false matches, nearest first.

    Args:
      embedding: (N, d) training embeddings (finite).
      pids: (N,) training identities.
      config: K, num_false and the metric.
      chunk_size: probes per distance chunk (memory O(chunk_size x N)).
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    pids = np.asarray(pids)
    if embedding.ndim != 2 or len(pids) != len(embedding):
        raise ValueError(f"embedding must be (N, d) with one pid per row, got shapes {embedding.shape} and "
                         f"{pids.shape}")
    if not np.isfinite(embedding).all():
        raise ValueError(f"training embedding row {int(np.argwhere(~np.isfinite(embedding))[0][0])} is not finite")
    k = capped_neighbours(config.num_neighbours, len(embedding))
    members, matches, counts = [], [], np.zeros(len(embedding), dtype=np.int64)
    bar = Progress(len(embedding), unit="probes", enabled=bool(verbose))
    for start, stop, _, top, _ in iter_knn_chunks(embedding, embedding, k + 1, config.metric, chunk_size):
        rows = np.arange(start, stop)
        neighbours = probe_first(top, rows)[:, 1:]
        same = pids[neighbours] == pids[rows, None]
        false_rank = np.cumsum(~same, axis=1)
        keep = same | (false_rank <= config.num_false)
        members.append(neighbours[keep])
        matches.append(same[keep])
        counts[start:stop] = keep.sum(axis=1)
        bar.update(stop)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return CandidatePools(np.concatenate(members).astype(np.int64), np.concatenate(matches), offsets, k)


def _fingerprint(embedding: np.ndarray, pids: np.ndarray, config: SequenceConfig) -> dict:
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(embedding, dtype=np.float32), np.ascontiguousarray(pids, dtype=np.int64)):
        digest.update(str(array.shape).encode())
        digest.update(memoryview(array).cast("B"))
    settings = {field: getattr(config, field) for field in ("num_neighbours", "num_false", "metric")}
    return {"features_sha256": digest.hexdigest(), **settings}


def load_or_mine_pools(directory: str, embedding: np.ndarray, pids: np.ndarray, config: SequenceConfig,
                       chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: int = 0) -> CandidatePools:
    """`mine_pools`, cached as `directory/POOLS_FILE`: a resumed run (same features, same K / num_false / metric)
    reads the pools back instead of searching neighbours again; anything else mines them anew and replaces the
    cache."""
    path = os.path.join(directory, POOLS_FILE)
    fingerprint = _fingerprint(embedding, pids, config)
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as cached:
            if json.loads(str(cached["fingerprint"])) == fingerprint:
                logging.info("read the training sequence pools from %s", path)
                return CandidatePools(cached["members"], cached["matches"], cached["offsets"],
                                      int(cached["num_neighbours"]))
        logging.info("%s belongs to other features or settings: mining the pools again", path)
    pools = mine_pools(embedding, pids, config, chunk_size, verbose)
    with atomic.atomic_path(path) as temporary:
        np.savez(temporary, members=pools.members, matches=pools.matches, offsets=pools.offsets,
                 num_neighbours=pools.num_neighbours, fingerprint=json.dumps(fingerprint))
    return pools


class SequenceSampler:
    """Batches of training sequences, a pure function of (seed, step).

    Args:
      pools: from `mine_pools` / `load_or_mine_pools`.
      config: l1 and l2.
      batch_size: sequences per step (16 in the paper).
      seed: the sampler's seed.
    """

    def __init__(self, pools: CandidatePools, config: SequenceConfig, batch_size: int = 16, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.pools, self.config, self.batch_size, self.seed = pools, config, int(batch_size), int(seed)

    @property
    def steps_per_epoch(self) -> int:
        """Steps of one pass over the training probes (an epoch)."""
        return max(1, self.pools.num_probes // self.batch_size)

    def probes(self, step: int) -> np.ndarray:
        """The probes of `step`: consecutive slices of a per-epoch seeded permutation (wrapping around when the
        set is smaller than a batch)."""
        epoch, slot = divmod(int(step), self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.pools.num_probes)
        return order[(slot * self.batch_size + np.arange(self.batch_size)) % len(order)]

    def sequences(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices int64 [B, 1 + l1], labels float32 [B, 1 + l1]) of `step`'s batch.

        Row 0 is the probe (label 1); then up to l1 pool members drawn without replacement, nearest first.
        Padding: index 0 and label IGNORE_LABEL (the mask is `labels != IGNORE_LABEL`).
        """
        length = self.config.sequence_length
        probes = self.probes(step)
        indices = np.zeros((len(probes), length), dtype=np.int64)
        labels = np.full((len(probes), length), IGNORE_LABEL, dtype=np.float32)
        rng = np.random.default_rng([self.seed, int(step), 1])
        for row, probe in enumerate(probes):
            members, matches = self.pools.pool(probe)
            count = min(self.config.length, len(members))
            chosen = np.sort(rng.choice(len(members), size=count, replace=False))
            indices[row, 0], labels[row, 0] = probe, 1.0
            indices[row, 1:1 + count] = members[chosen]
            labels[row, 1:1 + count] = matches[chosen]
        return indices, labels

    def batch(self, step: int, tables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`step`'s batch as ACP inputs: every table of `tables` (e.g. f3/f4/f5 or embedding, (N, D)) gathered to
        [B, 1 + l1, D], plus `mask` (bool), `k2` (int32 [B], l2) and `labels` (float32, IGNORE_LABEL at padding)."""
        indices, labels = self.sequences(step)
        out = {name: np.asarray(table)[indices] for name, table in tables.items()}
        out["mask"] = labels != IGNORE_LABEL
        out["k2"] = np.full(len(indices), self.config.refinement_length, dtype=np.int32)
        out["labels"] = labels
        return out

    def output_signature(self, tables: Mapping[str, np.ndarray]) -> dict[str, tf.TensorSpec]:
        """The `tf.TensorSpec`s of `batch` (for `engine.train_loop.steps_dataset`)."""
        shape = (self.batch_size, self.config.sequence_length)
        spec = {name: tf.TensorSpec(shape + (np.shape(table)[1],), tf.float32) for name, table in tables.items()}
        spec["mask"] = tf.TensorSpec(shape, tf.bool)
        spec["k2"] = tf.TensorSpec((self.batch_size,), tf.int32)
        spec["labels"] = tf.TensorSpec(shape, tf.float32)
        return spec
