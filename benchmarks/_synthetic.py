"""A synthetic corpus written straight into the packed feature layout, with a manifest: the
benchmarks that time epochs need stores of any size in seconds, and no audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepemocluster.data.corpus import Corpus
from deepemocluster.data.features import PackedFeatures
from deepemocluster.data.manifest import UNLABELLED_SPLIT, Utterance

FRAMES_PER_SECOND = 16000 / 256  # the default feature settings: 16 kHz, hop 256
SPLIT_SHARES = {"Train": 0.5, UNLABELLED_SPLIT: 0.44, "Development": 0.05, "Test1": 0.01}


def utterance_frames(n: int, seed: int = 0) -> np.ndarray:
    """Frame counts of ``n`` utterances: log-normal around 4 s (most 3-5 s), clipped to 1.5-11 s,
    the MSP-Podcast segment range."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(4.0), 0.2, n), 1.5, 11.0)
    return np.round(seconds * FRAMES_PER_SECOND).astype(np.int64)


def synthetic_store_bytes(n_utterances: int, n_mels: int, seed: int = 0) -> int:
    return int(utterance_frames(n_utterances, seed).sum()) * n_mels * 4


def synthetic_corpus(folder: Path, n_utterances: int, n_mels: int, seed: int = 0) -> Corpus:
    """``write_synthetic_store`` then ``open_synthetic_corpus``."""
    write_synthetic_store(folder, n_utterances, n_mels, seed)
    return open_synthetic_corpus(folder, n_utterances, n_mels, seed)


def write_synthetic_store(folder: Path, n_utterances: int, n_mels: int, seed: int = 0) -> Path:
    """``folder/packed.npy``: float32 z-normalised noise in the ``PackedFeatures`` layout."""
    folder.mkdir(parents=True, exist_ok=True)
    n_frames = int(utterance_frames(n_utterances, seed).sum())
    _write_noise(folder / "packed.npy", n_frames, n_mels, seed)
    return folder / "packed.npy"


def open_synthetic_corpus(
    folder: Path,
    n_utterances: int,
    n_mels: int,
    seed: int = 0,
    shares: dict[str, float] = SPLIT_SHARES,
) -> Corpus:
    """The store ``write_synthetic_store`` wrote with the same arguments (memory-mapped), with a
    manifest split by ``shares`` (``split_counts``); labelled utterances carry ratings."""
    offsets = np.concatenate([[0], np.cumsum(utterance_frames(n_utterances, seed))])
    frames = np.load(folder / "packed.npy", mmap_mode="r")
    if frames.shape != (offsets[-1], n_mels):
        raise ValueError(f"{folder}: store {frames.shape} does not match the arguments")
    packed = PackedFeatures(f"synthetic-{n_utterances}", frames, offsets)
    ones = np.ones(n_mels, dtype=np.float32)
    manifest = _manifest(split_counts(n_utterances, shares), seed)
    return Corpus(manifest, packed, np.zeros_like(ones), ones, [])


def split_counts(n: int, shares: dict[str, float] = SPLIT_SHARES) -> dict[str, int]:
    """``shares`` of ``n`` utterances per split (at least 2 each; Train takes the rounding)."""
    counts = {s: max(2, round(share * n)) for s, share in shares.items()}
    counts["Train"] = n - sum(c for s, c in counts.items() if s != "Train")
    return counts


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


def _manifest(counts: dict[str, int], seed: int) -> tuple[Utterance, ...]:
    """Utterances in split order; every labelled split has random 1-7 ratings."""
    rng = np.random.default_rng(seed + 1)
    records = []
    for split, count in counts.items():
        for _ in range(count):
            ratings = rng.uniform(1, 7, 3) if split != UNLABELLED_SPLIT else (None,) * 3
            a, v, d = (None if r is None else float(r) for r in ratings)
            i = len(records)
            records.append(Utterance(f"u{i:06d}", f"u{i:06d}.wav", split, a, v, d))
    return tuple(records)
