"""The P x K sampler of the re-ID baseline's training.

Choice of ours (WORKSPACE.md lists it): the sampler is a pure function of (seed, step): an epoch visits every
identity once (P per step, in a seeded permutation), and each visit draws K of the identity's images (without
replacement when it has K, with replacement otherwise). BoT's RandomIdentitySampler instead splits each identity's
images into groups of K; ours needs no sampler state to resume, and with augmentation seeded by (seed, step) a
resumed run trains on exactly the batches of an uninterrupted one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class PKSampler:
    """P identities x K images per step, a pure function of (seed, step) (see the module docstring).

    Args:
      labels: training label of every sample (`record.train` pids, 0..P-1).
      num_identities: P.
      num_instances: K.
      seed: the sampler's seed.
    """

    def __init__(self, labels: Sequence[int], num_identities: int = 16, num_instances: int = 4, seed: int = 0):
        labels = np.asarray(labels)
        self.identities = np.unique(labels)
        if num_identities < 1 or num_instances < 1:
            raise ValueError(f"P and K must be positive, got P={num_identities}, K={num_instances}")
        if len(self.identities) < num_identities:
            raise ValueError(f"the training set has {len(self.identities)} identities, fewer than "
                             f"P={num_identities} per batch")
        self.members = {pid: np.flatnonzero(labels == pid) for pid in self.identities}
        self.num_identities, self.num_instances, self.seed = num_identities, num_instances, seed

    @property
    def batch_size(self) -> int:
        return self.num_identities * self.num_instances

    @property
    def steps_per_epoch(self) -> int:
        return len(self.identities) // self.num_identities

    def indices(self, step: int) -> np.ndarray:
        """Sample indices of `step`'s batch: P runs of K images, one identity per run."""
        epoch, slot = divmod(int(step), self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.identities)
        chosen = order[slot * self.num_identities:(slot + 1) * self.num_identities]
        rng = np.random.default_rng([self.seed, epoch, slot])
        runs = [rng.choice(self.members[pid], self.num_instances,
                           replace=len(self.members[pid]) < self.num_instances) for pid in chosen]
        return np.concatenate(runs).astype(np.int64)
