"""The on-disk feature store: mel features computed once, reused across runs, read memory-mapped.

Layout under ``features.store``::

    <settings key>/settings.json          feature settings this folder holds
    <settings key>/entries/ab/<key>.npy   one utterance, (frames, n_mels) float32
    <settings key>/packed/<set>.npy       a corpus' entries back to back, memory-mapped in training
    <settings key>/packed/<set>.json      utterance offsets into it
    <settings key>/packed/<set>.stats-<train>.npz   per-bin mean/std over the Train utterances

An entry is keyed by the audio file's identity (absolute path, size, mtime) and, for a segment of
a long recording, its span, so a changed file or changed settings miss the cache. Every file is
written to a temporary name and renamed into place, so a killed pass never leaves a truncated
entry that a later run reads back.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from deepemocluster.data.audio import AudioSpan, load_audio, mel_features
from deepemocluster.errors import AudioError
from deepemocluster.runtime.files import temporary_name, write_atomic

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that changes the numbers of a feature matrix (and so the cache key)."""

    kind: str
    sample_rate: int
    n_mels: int
    n_fft: int
    hop_length: int
    fmin: float
    fmax: float | None
    log_offset: float

    @classmethod
    def from_config(cls, features) -> FeatureSettings:
        return cls(**{name: features[name] for name in cls.__dataclass_fields__})

    @property
    def frame_s(self) -> float:
        """Seconds from one frame to the next (the front-end's frame rate, inverted)."""
        return self.hop_length / self.sample_rate

    @property
    def key(self) -> str:
        return _digest(json.dumps({"v": _FORMAT_VERSION, **asdict(self)}, sort_keys=True))[:16]

    def compute(
        self, path: str | Path, start_s: float | None = None, end_s: float | None = None
    ) -> np.ndarray:
        """Decode one file (or its span) and return its (frames, n_mels) features; raises
        AudioError. The mel product runs on one BLAS thread wherever it is called (the store,
        predict): more threads block it differently, and the last bit then depends on the
        caller (seen on an AMD EPYC)."""
        audio = load_audio(path, self.sample_rate, self.n_fft, start_s, end_s)
        with threadpool_limits(1):
            return mel_features(audio, **asdict(self))


# What each front-end (``model.frontend``, ``model/build.py``) reads: the feature store, the
# Python API and the ONNX export ask here instead of assuming mels.
FRONTEND_FEATURES: dict[str, Callable[[DictConfig], FeatureSettings]] = {
    "mel_cnn": lambda cfg: FeatureSettings.from_config(cfg.features),
}


def feature_settings(cfg: DictConfig) -> FeatureSettings:
    """The features the run's front-end reads, as the feature store computes them."""
    return FRONTEND_FEATURES[cfg.model.frontend](cfg)


@dataclass(frozen=True)
class PackedFeatures:
    """Many utterances' features in one memory-mapped (total_frames, n_mels) array."""

    name: str
    frames: np.ndarray
    offsets: np.ndarray  # (n_utterances + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def utterance(self, i: int) -> np.ndarray:
        return self.frames[self.offsets[i] : self.offsets[i + 1]]


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


@dataclass(frozen=True)
class Extraction:
    """Outcome of one corpus pass: entry keys of the usable items (keyed as they were given: a
    path or an AudioSpan), and (path or ``path@start-end``, reason) of the skipped ones."""

    keys: dict[str | AudioSpan, str]
    skipped: list[tuple[str, str]]


class FeatureStore:
    def __init__(self, root: str | Path, settings: FeatureSettings) -> None:
        self.settings = settings
        self.dir = Path(root) / settings.key
        (self.dir / "packed").mkdir(parents=True, exist_ok=True)
        meta = self.dir / "settings.json"
        if not meta.exists():
            write_atomic(meta, json.dumps(asdict(settings), indent=2))

    def entry_path(self, key: str) -> Path:
        return self.dir / "entries" / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray:
        return np.load(self.entry_path(key), mmap_mode="r")

    def extract(
        self, items: Sequence[str | AudioSpan], workers: int = 1, desc: str = "features"
    ) -> Extraction:
        """Make sure every usable file or span has an entry; those that fail are skipped, never
        fatal."""
        keys, skipped, todo = {}, [], []
        for item in items:
            span = item if isinstance(item, AudioSpan) else AudioSpan(item)
            try:
                key = entry_key(span.path, span.start_s, span.end_s)
            except AudioError as e:
                skipped.append((str(span), e.reason))
                continue
            if self.entry_path(key).exists():
                keys[item] = key
            else:
                todo.append((item, span, key))
        for item, key, reason in self._run(todo, workers, desc):
            if reason is None:
                keys[item] = key
            else:
                skipped.append((str(item), reason))
        return Extraction(keys=keys, skipped=skipped)

    def _run(self, todo: list, workers: int, desc: str) -> Iterator[tuple[object, str, str | None]]:
        """Workers are threads: decoding, resampling, FFT, the mel product and file writes release
        the GIL, so threads run in parallel without the seconds of imports a spawned process pays
        per worker, and without the fork-after-OpenMP hang. One BLAS thread each: the mel product
        is small and more BLAS threads oversubscribe the cores (benchmarks/features.py); so
        does ``FeatureSettings.compute`` itself."""
        jobs = [(self, *job) for job in todo]
        bar = dict(total=len(jobs), desc=desc, unit="file", disable=not sys.stderr.isatty())
        with threadpool_limits(1):
            if workers <= 1:
                yield from tqdm(map(_extract_one, jobs), **bar)
                return
            pool = ThreadPoolExecutor(workers)
            try:
                yield from tqdm(pool.map(_extract_one, jobs), **bar)
            finally:  # an interrupted pass must not wait for the queued files
                pool.shutdown(wait=True, cancel_futures=True)

    def pack(self, keys: Sequence[str]) -> PackedFeatures:
        """One contiguous memory-mapped array for these entries, in this order (built once)."""
        name = _digest("\n".join(keys))[:20]
        data_path, index_path = (
            self.dir / "packed" / f"{name}.npy",
            self.dir / "packed" / f"{name}.json",
        )
        if not index_path.exists():
            lengths = [self.load(k).shape[0] for k in keys]
            offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
            tmp = temporary_name(data_path)  # a memory map is filled in place, then renamed
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float32, shape=(int(offsets[-1]), self.settings.n_mels)
            )
            for i, key in enumerate(keys):
                out[offsets[i] : offsets[i + 1]] = self.load(key)
            out.flush()
            del out
            os.replace(tmp, data_path)
            write_atomic(index_path, json.dumps({"offsets": offsets.tolist()}))
        offsets = np.asarray(json.loads(index_path.read_text())["offsets"], dtype=np.int64)
        return PackedFeatures(name, np.load(data_path, mmap_mode="r"), offsets)

    def normalisation(
        self, packed: PackedFeatures, indices: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin mean and std over the given utterances (Train), streamed and cached."""
        name = _digest(f"{packed.name}|{','.join(map(str, indices))}")[:20]
        path = self.dir / "packed" / f"stats-{name}.npz"
        if not path.exists():
            mean, std = _streamed_mean_std(packed, indices)
            write_atomic(path, lambda f: np.savez(f, mean=mean, std=std))
        with np.load(path) as stats:
            return stats["mean"], stats["std"]


def entry_key(path: str | Path, start_s: float | None = None, end_s: float | None = None) -> str:
    """Identity of an audio file (absolute path, size, modification time) and of the span."""
    path = Path(path).absolute()
    try:
        st = path.stat()
    except PermissionError as e:
        raise AudioError(path, "permission_denied") from e
    except FileNotFoundError as e:
        raise AudioError(path, "missing") from e
    except OSError as e:
        raise AudioError(path, "not_a_file", str(e)) from e
    span = "" if start_s is None else f"|{start_s:.3f}-{end_s:.3f}"
    return _digest(f"{path}|{st.st_size}|{st.st_mtime_ns}{span}")[:24]


def _extract_one(
    job: tuple[FeatureStore, object, AudioSpan, str],
) -> tuple[object, str, str | None]:
    store, item, span, key = job
    try:
        feats = store.settings.compute(span.path, span.start_s, span.end_s)
    except AudioError as e:
        return item, key, e.reason
    write_atomic(store.entry_path(key), lambda f: np.save(f, feats), point="feature_write")
    return item, key, None


def _streamed_mean_std(
    packed: PackedFeatures, indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and std over the ``indices`` utterances, one utterance in memory at a time
    (read like training batches, so the store's pages stay out of RSS)."""
    source = row_source(packed.frames)
    total = np.zeros(packed.frames.shape[1])
    total_sq = np.zeros_like(total)
    count = 0
    for i in indices:
        x = np.empty((packed.offsets[i + 1] - packed.offsets[i], len(total)), dtype=np.float32)
        source.read(x, int(packed.offsets[i]))
        x = x.astype(np.float64)
        total += x.sum(axis=0)
        total_sq += np.square(x).sum(axis=0)
        count += x.shape[0]
    if count == 0:
        raise ValueError("no Train frames to compute normalisation statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
