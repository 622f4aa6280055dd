"""Helpers shared by the benchmark scripts: machine description, memory readings, results files,
and a synthetic corpus written straight into the packed feature layout (no audio needed)."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from deepemocluster.data.corpus import Corpus
from deepemocluster.data.features import PackedFeatures
from deepemocluster.data.manifest import UNLABELLED_SPLIT, Utterance

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FRAMES_PER_SECOND = 16000 / 256  # the default feature settings: 16 kHz, hop 256


# --------------------------------------------------------------------------------------------
# Machine and results


def machine_info(
    packages: tuple[str, ...] = ("torch", "numpy"), load_before: list[float] | None = None
) -> dict:
    """CPU, platform, package versions and BLAS/OpenMP thread counts of this process; with
    ``load_before`` (taken when the measurement began) also the load average before and now."""
    info = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gib": _memory_gib(),
    }
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
    except ImportError:
        pass
    if load_before is not None:
        info["loadavg_before"], info["loadavg_after"] = load_before, load_average()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def write_results(result: dict, path: Path) -> None:
    """Refuse non-finite figures, then write ``result`` as indented JSON."""
    bad = [k for k, v in numbers(result) if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"non-finite figures: {bad}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def numbers(obj, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a nested dict/list, with its dotted path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, float):
        yield prefix, obj


# --------------------------------------------------------------------------------------------
# Memory


def peak_rss_mib() -> float:
    """ru_maxrss of this process (Linux: KiB). It counts resident pages of memory-mapped files
    too, and a child process starts from its parent's high-water mark at fork (kept across exec):
    ``VmHWM`` from ``rss_now_mib`` is this process image's own peak."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> dict[str, float]:
    """Current RSS split into anonymous (heap, arrays) and file-backed (memory maps, libraries),
    and ``VmHWM``, the peak RSS since this process started (or exec'd)."""
    fields = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return fields


class RssSampler:
    """Polls /proc/self/status in a thread and keeps the peak of each RSS field; ru_maxrss alone
    cannot tell anonymous memory from page-cache pages of a memory-mapped feature file."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s, self.peak = interval_s, rss_now_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        for key, value in rss_now_mib().items():
            self.peak[key] = max(self.peak.get(key, 0.0), value)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        """A last sample: a block shorter than the interval is still seen once."""
        self._stop.set()
        self._thread.join()
        self._sample()


# --------------------------------------------------------------------------------------------
# The tiny demo config of the quick modes (seconds per run, for the test suite)

TINY_RUN = (
    "data.demo.n_train=48",
    "data.demo.n_dev=16",
    "data.demo.n_test=16",
    "data.demo.n_unlabelled=24",
    "data.demo.n_speakers=12",
    "data.demo.n_episodes=0",  # configs/default.yaml's long episodes: not in a quick run
    "features.n_mels=32",
    "chunking.n_chunks=3",
    "model.channels=[4,8,8,16]",
    "model.strides=[1,2,2,2]",
    "model.embed_dim=32",
    "model.head_dim=32",
    "train.batch_utterances=8",
    "cluster.k=4",
)


# --------------------------------------------------------------------------------------------
# Synthetic corpus

SPLIT_SHARES = {"Train": 0.5, UNLABELLED_SPLIT: 0.44, "Development": 0.05, "Test1": 0.01}


def utterance_frames(n: int, seed: int = 0) -> np.ndarray:
    """Frame counts of ``n`` utterances: log-normal around 4 s (most 3-5 s), clipped to 1.5-11 s,
    the MSP-Podcast segment range."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(4.0), 0.2, n), 1.5, 11.0)
    return np.round(seconds * FRAMES_PER_SECOND).astype(np.int64)


def synthetic_corpus(folder: Path, n_utterances: int, n_mels: int, seed: int = 0) -> Corpus:
    """A corpus whose features are written directly as a ``PackedFeatures`` memory map
    (``folder/packed.npy``, float32, z-normalised noise) with a manifest split by ``SPLIT_SHARES``
    (at least 2 utterances per split); Train utterances carry ratings."""
    write_synthetic_store(folder, n_utterances, n_mels, seed)
    return open_synthetic_corpus(folder, n_utterances, n_mels, seed)


def synthetic_store_bytes(n_utterances: int, n_mels: int, seed: int = 0) -> int:
    return int(utterance_frames(n_utterances, seed).sum()) * n_mels * 4


def write_synthetic_store(folder: Path, n_utterances: int, n_mels: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n_frames = int(utterance_frames(n_utterances, seed).sum())
    _write_noise(folder / "packed.npy", n_frames, n_mels, seed)
    return folder / "packed.npy"


def open_synthetic_corpus(folder: Path, n_utterances: int, n_mels: int, seed: int = 0) -> Corpus:
    """The corpus ``write_synthetic_store`` wrote with the same arguments (memory-mapped)."""
    offsets = np.concatenate([[0], np.cumsum(utterance_frames(n_utterances, seed))])
    frames = np.load(folder / "packed.npy", mmap_mode="r")
    if frames.shape != (offsets[-1], n_mels):
        raise ValueError(f"{folder}: store {frames.shape} does not match the arguments")
    packed = PackedFeatures(f"synthetic-{n_utterances}", frames, offsets)
    ones = np.ones(n_mels, dtype=np.float32)
    return Corpus(_manifest(n_utterances, seed), packed, np.zeros_like(ones), ones, [])


def _write_noise(path: Path, n_frames: int, n_mels: int, seed: int) -> None:
    """Gaussian noise, written block by block from a 64 MiB pool at random shifts (fast, and no
    two blocks alike), so a multi-GB store never sits in memory."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(2**24, dtype=np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_frames, n_mels))
    flat = out.reshape(-1)
    block = 2**22
    for start in range(0, flat.size, block):
        piece = flat[start : start + block]
        shift = int(rng.integers(0, pool.size - piece.size + 1))
        piece[:] = pool[shift : shift + piece.size]
    out.flush()
    del out, flat


def _manifest(n: int, seed: int) -> tuple[Utterance, ...]:
    counts = {s: max(2, round(share * n)) for s, share in SPLIT_SHARES.items()}
    counts["Train"] = n - sum(c for s, c in counts.items() if s != "Train")
    rng = np.random.default_rng(seed + 1)
    records = []
    for split, count in counts.items():
        for _ in range(count):
            ratings = rng.uniform(1, 7, 3) if split != UNLABELLED_SPLIT else (None,) * 3
            a, v, d = (None if r is None else float(r) for r in ratings)
            i = len(records)
            records.append(Utterance(f"u{i:06d}", f"u{i:06d}.wav", split, a, v, d))
    return tuple(records)


# --------------------------------------------------------------------------------------------
# Child processes


def run_child(script: Path, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python script args`` in a fresh process (optionally with extra environment, e.g. an
    OpenMP setting that is read once at start-up); its last stdout line is a JSON object."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
