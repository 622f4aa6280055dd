"""Torch datasets over a packed feature store: utterances as chunk stacks, or single chunks.

Features stay on disk. A batch reads only the frames of its chunks, with ``os.preadv`` straight
into the batch buffer: the store's pages pass through the kernel's page cache and never become
part of this process's RSS, as the pages of a memory map it slices would (docs/performance.md,
"Scale"). Memory therefore does not grow with the corpus. Normalisation (per-bin Train z-score,
NaN → 0, ±inf and outliers clipped) happens per batch, on the fly.
"""

from __future__ import annotations

import mmap
import os
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from deepemocluster.data.chunking import chunk_starts
from deepemocluster.data.features import PackedFeatures
from deepemocluster.faults import failpoint


class StoreFile:
    """Rows of a float32 ``.npy`` store, read with ``os.preadv`` into the caller's buffer.

    The descriptor is opened on first use in each process, because DataLoader workers may be
    forked (a child closes its inherited copy) or spawned, and a pickled copy carries none. It is
    closed by ``close()``, or when the object is collected.
    """

    def __init__(self, path: str, header: int, row_bytes: int) -> None:
        self.path, self.header, self.row_bytes = path, header, row_bytes
        self._fd: int | None = None
        self._pid: int | None = None
        self._closer: weakref.finalize | None = None

    def read(self, dst: np.ndarray, first_row: int) -> None:
        """Fill ``dst`` (C-contiguous float32 rows) from row ``first_row`` on."""
        view = memoryview(dst).cast("B")
        offset = self.header + first_row * self.row_bytes
        fd = self._descriptor()
        while view:  # a regular file may still return short reads; 0 bytes means the end
            n = os.preadv(fd, [view], offset)
            if n == 0:
                raise EOFError(f"{self.path}: the store ends before byte {offset}")
            view, offset = view[n:], offset + n

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._fd = self._pid = self._closer = None

    def _descriptor(self) -> int:
        if self._pid != os.getpid():
            self.close()
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    def __getstate__(self) -> dict:
        return {"path": self.path, "header": self.header, "row_bytes": self.row_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


class ArrayRows:
    """Rows of an in-RAM array (features computed for prediction), copied by slicing."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames

    def read(self, dst: np.ndarray, first_row: int) -> None:
        dst[:] = self.frames[first_row : first_row + len(dst)]


def row_source(frames: np.ndarray) -> StoreFile | ArrayRows:
    """``StoreFile`` for a whole-file float32 memory map (how ``FeatureStore.pack`` opens a
    store), else ``ArrayRows``. A view of a map keeps the map's ``offset`` but not its first
    row, so only an array whose buffer is the map itself counts as the whole file."""
    whole_map = isinstance(frames, np.memmap) and isinstance(frames.base, mmap.mmap)
    if whole_map and frames.dtype == np.float32 and frames.flags.c_contiguous:
        return StoreFile(str(frames.filename), int(frames.offset), frames.strides[0])
    return ArrayRows(frames)


class ChunkDataset(Dataset):
    """Utterances ``rows`` of ``packed``, each cut into ``n_chunks`` chunks of ``frames`` frames.

    ``dataset[i]`` is utterance i: ``(chunks, targets, i)`` when targets were given (one row per
    utterance, NaN allowed for unlabelled rows), else ``(chunks, i)``; chunks is (C, frames, n_mels).
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
        self.n_mels = packed.frames.shape[1]
        self.source = row_source(packed.frames)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)
        if self.targets is not None and len(self.targets) != len(self.rows):
            raise ValueError(f"{len(self.targets)} target rows for {len(self.rows)} utterances")
        self.first_frame = packed.offsets[self.rows]
        self.lengths = packed.lengths[self.rows]
        starts = [chunk_starts(int(n), n_chunks, frames) for n in self.lengths]
        self.starts = np.array(starts, dtype=np.int64).reshape(-1, n_chunks)

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
        """(chunks (B, frames, n_mels), the same global chunk ids (B,)); utterance = id // C."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._read(ids), torch.from_numpy(ids)

    def _read(self, ids: np.ndarray) -> torch.Tensor:
        """Each chunk's frames into its row of one zeroed buffer (short utterances leave the tail
        as padding), then the normalisation of the valid frames in place."""
        utt, c = np.divmod(ids, self.n_chunks)
        start = self.starts[utt, c]
        first = self.first_frame[utt] + start
        valid = np.minimum(self.frames, self.lengths[utt] - start)
        out = np.zeros((len(ids), self.frames, self.n_mels), dtype=np.float32)
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
    each index is a whole batch of global chunk ids, read in one call (and in loader workers)."""

    def __init__(self, dataset: ChunkDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return self.dataset.n_total_chunks

    def __getitem__(self, ids):
        failpoint("train_step")
        return self.dataset.chunk_batch(np.asarray(ids))
