"""Set-wise training samples of KVM-MN (Sec. "Experiments", "Collecting training samples"; Eq. 7-8).

A training sample ("combination") is a probe image and a gallery set of M images of M distinct identities, one of
them the probe's identity seen by another camera (the positive), the other M - 1 negatives. The paper: "we use
M = 15 images in the gallery set for a selected probe image, where the negative samples are randomly collected
from 100 nearest neighbors of the probe image measured by L2 distance and a positive sample is chosen from
different views of the probe. As a result, we collect around 500K combinations as training samples."

Mining (`mining=`, Table 3 row D "2-rand" / "2-hard"):
- "hard": the negatives are drawn at random from the probe's `num_neighbors` (100) nearest training images by L2
  distance, skipping the probe's own identity: the neighbours are visited in a random order and the first image
  of each new identity is taken until M - 1 identities are found, so an identity with many images close to the
  probe is the likelier pick. When the neighbours hold fewer than M - 1 other identities, the rest are drawn as
  in "rand" (counted in `NeighborReport.short_probes`, logged when the table is mined).
- "rand": M - 1 identities other than the probe's, uniformly at random, a random image of each.

Choices of ours (the paper does not say; see also WORKSPACE.md):
- The features of the L2 neighbours are `KVMMN.pooled_features` (the global average of the backbone's Mixed_4f
  map), which is meaningful with the ImageNet weights alone, before the 1x1 projection has been trained.
- The neighbour table is mined once from the model the training starts from (the paper's reading: the
  combinations are "collected" before training) or, with `refresh_every=N`, again every N steps with the current
  weights. The table used by step s is version `s // N` (version 0 without refresh).
- `num_samples=S` fixes the pool of combinations (Table 3's "#Sample": 100K, 500K): combination j = 0..S-1 is a
  pure function of (seed, j) and the table; the training visits the S combinations in a new random order every
  pass. `num_samples=0` draws a new combination for every training example instead.
- Probes: combination j's probe is the (j mod n)-th image of a seeded permutation of the n eligible probes, a new
  permutation for every block of n combinations, so every image is a probe equally often.
- A probe whose identity is seen by one camera only has no positive "from different views": such images are
  never probes (they can still be negatives); they are counted in `skipped_images` / `skipped_identities` and
  logged, never paired with a same-camera positive.

Hard mining needs meaningful features: with an untrained backbone (no ImageNet weights) the L2 neighbours of a
probe are mostly images of its own camera and background, the positive (another camera) is the image least like
the probe, and the network learns that shortcut instead of identities (seen on the synthetic dataset: training
accuracy near 90%, test rank-1 at chance). From scratch, use "rand".

Determinism: `batch(step)` is a pure function of (seed, step) and the table version `step` needs, so a resumed
run sees the batches of an uninterrupted one. The table (and its version) lives in `state`, an
`engine.state.ArrayState` saved in the training checkpoint.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
from absl import logging

from engine.state import ArrayState
from rerank.knn import knn

MINING = ("hard", "rand")
NUM_NEIGHBORS = 100


class SamplerError(ValueError):
    """The training split cannot give the requested set-wise samples; the message says why."""


class SamplerClosed(RuntimeError):
    """The sampler was closed while a batch waited for a neighbour table (training stopped)."""


@dataclasses.dataclass(frozen=True)
class NeighborReport:
    """How well a mined table serves hard mining: eligible probes, and those whose neighbours hold fewer than
    M - 1 other identities (their missing negatives are drawn at random)."""
    probes: int
    short_probes: int
    mean_identities: float


class SetwiseSampler:
    """Batches of set-wise combinations: probe indices [B], gallery-set indices [B, M] and the positive's position
    [B] (int32 indices into the training list).

    Args:
      pids: training identities (relabelled 0..P-1), one per image.
      camids: cameras, one per image.
      gallery_size: M, the images of a gallery set (M distinct identities; M >= 2).
      batch_size: B, combinations per step (the global batch).
      mining: "hard" (negatives from the L2 neighbours) or "rand".
      num_neighbors: neighbours a hard negative is drawn from (the paper's 100).
      num_samples: size of the fixed pool of combinations (0: a new combination for every example).
      refresh_every: mine the neighbour table again every this many steps (0: once, at the start).
      seed: seeds every draw.
    """

    def __init__(self, pids, camids, *, gallery_size: int = 15, batch_size: int = 20, mining: str = "hard",
                 num_neighbors: int = NUM_NEIGHBORS, num_samples: int = 0, refresh_every: int = 0, seed: int = 0):
        self.pids = np.asarray(pids, dtype=np.int64)
        self.camids = np.asarray(camids, dtype=np.int64)
        if self.pids.ndim != 1 or self.pids.shape != self.camids.shape:
            raise SamplerError(f"pids and camids must be 1-D of equal length, got {self.pids.shape} and "
                               f"{self.camids.shape}")
        if not len(self.pids):
            raise SamplerError("the training split is empty: no image to sample combinations from")
        if mining not in MINING:
            raise SamplerError(f"mining={mining!r}: choose one of {', '.join(MINING)}")
        for name, value, low in (("gallery_size", gallery_size, 2), ("batch_size", batch_size, 1),
                                 ("num_neighbors", num_neighbors, 1), ("num_samples", num_samples, 0),
                                 ("refresh_every", refresh_every, 0)):
            if int(value) < low:
                raise SamplerError(f"{name}={value} must be >= {low}")
        self.gallery_size, self.batch_size, self.mining = int(gallery_size), int(batch_size), mining
        self.num_neighbors, self.num_samples = int(num_neighbors), int(num_samples)
        self.refresh_every, self.seed = int(refresh_every), int(seed)

        identities, self._pid_index = np.unique(self.pids, return_inverse=True)
        if len(identities) < self.gallery_size:
            raise SamplerError(f"a gallery set of M={self.gallery_size} images needs M distinct identities, but the "
                               f"training split has {len(identities)}: lower --gallery_size")
        order = np.argsort(self._pid_index, kind="stable")
        bounds = np.cumsum(np.bincount(self._pid_index))
        self._images_of = np.split(order, bounds[:-1])          # image indices of each identity
        multi_camera = np.array([len(np.unique(self.camids[images])) > 1 for images in self._images_of])
        eligible = multi_camera[self._pid_index]
        self.probes = np.flatnonzero(eligible)
        self.skipped_images = int(len(self.pids) - len(self.probes))
        self.skipped_identities = int(np.count_nonzero(~multi_camera))
        if not len(self.probes):
            raise SamplerError("no training identity is seen by two cameras, so no probe has a positive from "
                               "another view (KVM-MN, 'Collecting training samples')")
        if self.skipped_images:
            logging.warning("set-wise sampler: %d identities (%d images) are seen by one camera only; their images "
                            "are never probes (no positive from another view), only negatives",
                            self.skipped_identities, self.skipped_images)
        self.state = ArrayState(neighbors=np.zeros((0, 0), np.int32), version=np.int64(-1))
        self._condition = threading.Condition()
        self._closed = False
        self._permutations: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ the neighbour table
    @property
    def needs_neighbors(self) -> bool:
        return self.mining == "hard"

    @property
    def table_size(self) -> int:
        """Neighbours kept per image (num_neighbors, or every other image of a smaller split)."""
        return min(self.num_neighbors, len(self.pids) - 1)

    def table_version(self, step: int) -> int:
        """The version of the neighbour table that the batch of `step` is drawn with."""
        return step // self.refresh_every if self.refresh_every else 0

    def is_refresh_step(self, completed_steps: int) -> bool:
        """Whether the table is mined again once `completed_steps` steps are done."""
        return bool(self.needs_neighbors and self.refresh_every and completed_steps % self.refresh_every == 0)

    @property
    def version(self) -> int:
        return int(self.state["version"])

    def nearest_neighbors(self, features) -> np.ndarray:
        """[n, table_size] int32: each image's nearest other training images by L2 distance, nearest first."""
        features = np.asarray(features, dtype=np.float32)
        if features.shape[:1] != self.pids.shape:
            raise SamplerError(f"features for mining have {features.shape[0]} rows, the training split "
                               f"{len(self.pids)} images")
        k = self.table_size
        if k < 1:
            raise SamplerError("hard mining needs at least two training images")
        _, index = knn(features, features, k + 1, metric="euclidean")
        keep = index != np.arange(len(index))[:, None]
        # An image is its own nearest neighbour unless k + 1 exact duplicates outrank it: then drop the farthest.
        keep[keep.all(axis=1), -1] = False
        return index[keep].reshape(len(index), k).astype(np.int32)

    def mine(self, features, version: int) -> NeighborReport:
        """Build table `version` from `features` ([n, C], one row per training image), publish it and report."""
        table = self.nearest_neighbors(features)
        report = self.report(table)
        logging.info("set-wise sampler: mined neighbour table v%d (%d neighbours); %d of %d probes have fewer than "
                     "M-1=%d other identities among them (filled at random); %.1f identities on average", version,
                     table.shape[1], report.short_probes, report.probes, self.gallery_size - 1,
                     report.mean_identities)
        self.publish(table, version)
        return report

    def publish(self, table, version: int) -> None:
        table = np.asarray(table, dtype=np.int32)
        if table.shape != (len(self.pids), self.table_size):
            raise SamplerError(f"neighbour table of shape {table.shape}, expected {(len(self.pids), self.table_size)}")
        with self._condition:
            self.state["neighbors"] = table
            self.state["version"] = np.int64(version)
            self._condition.notify_all()

    def report(self, table) -> NeighborReport:
        """Distinct other identities among each probe's neighbours (`table` [n, k])."""
        neighbor_pids = self.pids[np.asarray(table)[self.probes]]
        own = self.pids[self.probes][:, None]
        counts = np.array([len(np.unique(row[row != p])) for row, p in zip(neighbor_pids, own[:, 0])])
        return NeighborReport(probes=len(self.probes), short_probes=int(np.count_nonzero(counts < self.gallery_size - 1)),
                              mean_identities=float(counts.mean()))

    def _table(self, version: int) -> np.ndarray:
        """Table `version`, waiting for it while the training loop mines it (after the step before it)."""
        with self._condition:
            while self.version != version:
                if self._closed:
                    raise SamplerClosed(f"sampler closed while waiting for neighbour table v{version}")
                if self.version > version:
                    raise SamplerError(f"neighbour table v{version} was asked for after v{self.version} was mined: "
                                       "batches must be drawn in step order")
                self._condition.wait(timeout=1.0)
            return self.state["neighbors"]

    def close(self) -> None:
        """Wake and fail any batch waiting for a table (call when training stops)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    # ------------------------------------------------------------------ combinations
    def _permutation(self, kind: int, block: int, size: int) -> np.ndarray:
        key = (kind, block, size)
        if key not in self._permutations:
            if len(self._permutations) > 8:
                self._permutations.clear()
            self._permutations[key] = np.random.default_rng([self.seed, kind, block]).permutation(size)
        return self._permutations[key]

    def probe_of(self, combination: int) -> int:
        n = len(self.probes)
        return int(self.probes[self._permutation(0, combination // n, n)[combination % n]])

    def combination_of(self, example: int) -> int:
        """The combination the `example`-th training example (step * B + b) uses."""
        if not self.num_samples:
            return example
        block, offset = divmod(example, self.num_samples)
        return int(self._permutation(1, block, self.num_samples)[offset])

    def _random_negatives(self, rng, exclude: set, count: int) -> list[int]:
        candidates = np.setdiff1d(np.arange(len(self._images_of)), np.fromiter(exclude, np.int64, len(exclude)))
        chosen = rng.choice(candidates, size=count, replace=False)
        return [int(rng.choice(self._images_of[p])) for p in chosen]

    def combination(self, index: int, table: np.ndarray | None = None) -> tuple[int, np.ndarray, int]:
        """(probe, gallery set [M] image indices, position of the positive in it) of combination `index`."""
        probe = self.probe_of(index)
        rng = np.random.default_rng([self.seed, 2, index])
        pid, camid = self._pid_index[probe], self.camids[probe]
        own = self._images_of[pid]
        positive = int(rng.choice(own[self.camids[own] != camid]))
        wanted = self.gallery_size - 1
        negatives, taken = [], {int(pid)}
        if self.mining == "hard":
            neighbors = table[probe]
            for image in neighbors[rng.permutation(len(neighbors))]:
                image_pid = int(self._pid_index[image])
                if image_pid not in taken:
                    taken.add(image_pid)
                    negatives.append(int(image))
                    if len(negatives) == wanted:
                        break
        if len(negatives) < wanted:
            negatives += self._random_negatives(rng, taken, wanted - len(negatives))
        label = int(rng.integers(self.gallery_size))
        gallery = np.array(negatives[:label] + [positive] + negatives[label:], dtype=np.int32)
        return probe, gallery, label

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probes [B], gallery sets [B, M], positive positions [B]) of training step `step` (0-based), int32."""
        table = self._table(self.table_version(step)) if self.needs_neighbors else None
        first = step * self.batch_size
        rows = [self.combination(self.combination_of(first + b), table) for b in range(self.batch_size)]
        probes, galleries, labels = zip(*rows)
        return (np.array(probes, np.int32), np.stack(galleries).astype(np.int32), np.array(labels, np.int32))
