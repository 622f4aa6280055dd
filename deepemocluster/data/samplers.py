"""Samplers over chunk ids, and the batch layout a training step takes (``UtteranceBatch``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class UtteranceBatch:
    """A training batch as the network takes it: ``ids``, the chunk id of each row, utterance
    after utterance; ``counts``, the rows of each utterance (None: every row is an utterance of
    its own); ``drawn``, the row of each chunk the sampler drew, in its order (the per-chunk
    losses: cross-entropy and pairs; a chunk drawn twice counts twice)."""

    ids: np.ndarray
    counts: np.ndarray | None
    drawn: np.ndarray

    @property
    def first_rows(self) -> np.ndarray:
        """The first row of every utterance."""
        if self.counts is None:
            return np.arange(len(self.ids))
        return np.cumsum(self.counts) - self.counts

    @classmethod
    def of(cls, drawn: np.ndarray, n_chunks: int, whole_below: int) -> UtteranceBatch:
        """The batch of the drawn chunk ids ``drawn``: each one below ``whole_below`` (a labelled
        chunk, under attention pooling) brings every chunk of its utterance, once per
        utterance, after the other drawn chunks, which stay one-chunk utterances in draw order."""
        drawn = np.asarray(drawn, dtype=np.int64)
        whole = drawn < whole_below
        if not whole.any():
            return cls(drawn, None, np.arange(len(drawn)))
        singles = np.flatnonzero(~whole)
        utterances, first, which = np.unique(
            drawn[whole] // n_chunks, return_index=True, return_inverse=True
        )
        order = np.argsort(first)  # the utterances in order of their first draw
        block = np.empty(len(order), dtype=np.int64)
        block[order] = np.arange(len(order))
        rows = np.empty(len(drawn), dtype=np.int64)
        rows[singles] = np.arange(len(singles))
        rows[whole] = len(singles) + block[which] * n_chunks + drawn[whole] % n_chunks
        blocks = (utterances[order, None] * n_chunks + np.arange(n_chunks)).ravel()
        counts = np.concatenate(
            [np.ones(len(singles), dtype=np.int64), np.full(len(order), n_chunks)]
        )
        return cls(np.concatenate([drawn[singles], blocks]), counts, rows)


class UtteranceBatches(Sampler[UtteranceBatch]):
    """``batches`` of drawn chunk ids as ``UtteranceBatch``es (``UtteranceBatch.of``). Under
    torchrun it goes after ``ShardedBatches``: each rank completes the utterances of its own
    slice, so no utterance is ever split between ranks."""

    def __init__(self, batches: Sampler[np.ndarray], n_chunks: int, whole_below: int) -> None:
        self.batches, self.n_chunks, self.whole_below = batches, n_chunks, whole_below

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[UtteranceBatch]:
        for batch in self.batches:
            yield UtteranceBatch.of(batch, self.n_chunks, self.whole_below)
