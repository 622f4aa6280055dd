"""Samplers over chunk ids."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class UniformClusterSampler(Sampler[np.ndarray]):
    """Batches of chunk ids in which every non-empty cluster is served equally often.

    Each non-empty cluster contributes ⌈n/K'⌉ draws (with replacement when it is smaller than that),
    the pool is shuffled and cut to n. The served *labels* are flat, unlike DeepCluster's released
    sampler, whose indices into a cluster-ordered dataset follow the cluster sizes.
    """

    def __init__(self, ids: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> None:
        self.ids, self.labels = np.asarray(ids), np.asarray(labels)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        clusters = [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]
        per_cluster = -(-len(self.ids) // len(clusters))
        draws = [rng.choice(m, per_cluster, replace=len(m) < per_cluster) for m in clusters]
        order = rng.permutation(np.concatenate(draws))[: len(self.ids)]
        for start in range(0, len(order), self.batch_size):
            yield self.ids[order[start : start + self.batch_size]]


class ShuffledBatchSampler(Sampler[np.ndarray]):
    """Shuffled batches of ``ids``; with ``n_samples`` > len(ids), repeated shuffled passes are
    served until ``n_samples`` ids went out (so a regression-only epoch takes as many steps as a
    clustering epoch over labelled + unlabelled chunks: comparisons at equal compute)."""

    def __init__(
        self, ids: np.ndarray, batch_size: int, seed: int, n_samples: int | None = None
    ) -> None:
        self.ids, self.batch_size, self.seed = np.asarray(ids), batch_size, seed
        self.n_samples = max(n_samples or 0, len(self.ids))

    def __len__(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        passes = -(-self.n_samples // len(self.ids))
        order = np.concatenate([rng.permutation(len(self.ids)) for _ in range(passes)])
        order = order[: self.n_samples]
        for start in range(0, len(order), self.batch_size):
            yield self.ids[order[start : start + self.batch_size]]


class ShardedBatches(Sampler[np.ndarray]):
    """Rank ``rank``'s slice of every batch of ``batches`` (under torchrun). Every rank draws the
    same global batches from the same seed, so all take the same number of steps, and DDP's
    averaged gradient is that of the global batch. A last batch with fewer ids than ranks is
    dropped: some rank would have nothing to step on (``len`` still counts it: progress only)."""

    def __init__(self, batches: Sampler[np.ndarray], rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches:
            if len(batch) >= self.world_size:
                yield np.array_split(batch, self.world_size)[self.rank]
