"""Torch datasets over a packed feature store: utterances as chunk stacks, or single chunks.

Features stay on disk. A batch reads only the frames of its chunks, with ``os.preadv`` straight
into the batch buffer: the store's pages pass through the kernel's page cache and never become
part of this process's RSS, as the pages of a memory map it slices would (docs/performance.md,
"Scale"). Memory therefore does not grow with the corpus. Normalisation (per-bin Train z-score,
NaN → 0, ±inf and outliers clipped) happens per batch, on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from deepemocluster.data.chunking import chunk_starts
from deepemocluster.data.features import PackedFeatures, row_source
from deepemocluster.data.samplers import UtteranceBatch
from deepemocluster.runtime.faults import failpoint


class ChunkDataset(Dataset):
    """Utterances ``rows`` of ``packed``, each cut into ``n_chunks`` chunks of ``frames`` frames.

    ``dataset[i]`` is utterance i: ``(chunks, targets, i)`` when targets were given (one row per
    utterance, NaN allowed for unlabelled rows), else ``(chunks, i)``; chunks is (C, frames, feature_dim).
    ``chunk_batch(ids)`` serves single chunks by global id ``i * n_chunks + c`` for training.
    Pickling carries the store's path, not its frames (spawned DataLoader workers).
    """

    def __init__(
        self,
        packed: PackedFeatures,
        rows: Sequence[int],
        mean: np.ndarray,
        std: np.ndarray,
        n_chunks: int,
        frames: int,
        clip: float,
        targets: np.ndarray | None = None,
    ) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.n_chunks, self.frames, self.clip = n_chunks, frames, clip
        self.feature_dim = packed.frames.shape[1]  # mel bins for the mel CNN
        self.source = row_source(packed.frames)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)
        if self.targets is not None and len(self.targets) != len(self.rows):
            raise ValueError(f"{len(self.targets)} target rows for {len(self.rows)} utterances")
        self.first_frame = packed.offsets[self.rows]
        self.lengths = packed.lengths[self.rows]
        starts = [chunk_starts(int(n), n_chunks, frames) for n in self.lengths]
        self.starts = np.array(starts, dtype=np.int64).reshape(-1, n_chunks)

    @classmethod
    def for_rows(
        cls,
        packed: PackedFeatures,
        rows: Sequence[int],
        mean: np.ndarray,
        std: np.ndarray,
        chunking: DictConfig,
        targets: np.ndarray | None = None,
        clip: float | None = None,
    ) -> ChunkDataset:
        """Utterances ``rows`` chunked as the ``chunking`` config group says, normalised with the
        Train statistics ``mean``/``std`` and clipped to ``chunking.clip`` (or ``clip``): the one
        way training, evaluation and prediction cut their utterances."""
        c = chunking
        clip = c.clip if clip is None else clip
        return cls(packed, rows, mean, std, c.n_chunks, c.frames, clip, targets)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_total_chunks(self) -> int:
        return len(self.rows) * self.n_chunks

    def __getitem__(self, i: int):
        ids = np.arange(i * self.n_chunks, (i + 1) * self.n_chunks)
        chunks = self._read(ids)
        return (chunks, self.targets[i], i) if self.targets is not None else (chunks, i)

    def chunk_batch(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(chunks (B, frames, feature_dim), the same global chunk ids (B,)); utterance = id // C."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._read(ids), torch.from_numpy(ids)

    def _read(self, ids: np.ndarray) -> torch.Tensor:
        """Each chunk's frames into its row of one zeroed buffer (short utterances leave the tail
        as padding), then the normalisation of the valid frames in place."""
        utt, c = np.divmod(ids, self.n_chunks)
        start = self.starts[utt, c]
        first = self.first_frame[utt] + start
        valid = np.minimum(self.frames, self.lengths[utt] - start)
        out = np.zeros((len(ids), self.frames, self.feature_dim), dtype=np.float32)
        for j in range(len(ids)):
            self.source.read(out[j, : valid[j]], int(first[j]))
        self._normalise(out, valid)
        return torch.from_numpy(out)

    def _normalise(self, out: np.ndarray, valid: np.ndarray) -> None:
        """Z-score, NaN → 0, clip to ±clip (inf included); padding stays exactly 0."""
        out -= self.mean
        out /= self.std
        out[np.arange(self.frames) >= valid[:, None]] = 0.0
        np.nan_to_num(out, copy=False, nan=0.0, posinf=self.clip, neginf=-self.clip)
        np.clip(out, -self.clip, self.clip, out=out)


class ChunkBatches(Dataset):
    """Adapter for ``DataLoader(ChunkBatches(ds), sampler=batch_sampler, batch_size=None)``:
    each index is a whole batch, read in one call (and in loader workers): chunk ids give
    (chunks, ids), an ``UtteranceBatch`` (the training loop's) gives (its chunks, itself)."""

    def __init__(self, dataset: ChunkDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return self.dataset.n_total_chunks

    def __getitem__(self, batch):
        failpoint("train_step")
        if isinstance(batch, UtteranceBatch):
            return self.dataset.chunk_batch(batch.ids)[0], batch
        return self.dataset.chunk_batch(np.asarray(batch))
