"""Dynamic chunking: every utterance becomes the same number of fixed-length chunks.

Starts are evenly spaced so the first chunk begins at frame 0 and the last one ends at the final
frame: short utterances get overlapping chunks, long ones get gaps between chunks (the reference's
⌊(T − m)/(C − 1)⌋ step leaves the tail uncovered; rounding the exact spacing does not). An utterance
shorter than one chunk is padded at the end with zeros *after* z-normalisation, i.e. with the Train
mean of each mel bin, so padding carries no energy cue of its own; all its chunks are then identical.
"""

from __future__ import annotations

import numpy as np


def chunk_starts(n_frames: int, n_chunks: int, frames: int) -> np.ndarray:
    """First frame of each of ``n_chunks`` chunks of ``frames`` frames over ``n_frames`` frames."""
    if n_frames <= frames:
        return np.zeros(n_chunks, dtype=np.int64)
    if n_chunks == 1:
        return np.array([(n_frames - frames) // 2], dtype=np.int64)
    spacing = (n_frames - frames) / (n_chunks - 1)
    return np.round(np.arange(n_chunks) * spacing).astype(np.int64)


def chunk_utterance(features: np.ndarray, n_chunks: int, frames: int) -> np.ndarray:
    """(n_frames, n_mels) → (n_chunks, frames, n_mels); short input is zero-padded at the end."""
    n_frames = features.shape[0]
    if n_frames < frames:
        padded = np.zeros((frames, features.shape[1]), dtype=features.dtype)
        padded[:n_frames] = features
        features = padded
    starts = chunk_starts(features.shape[0], n_chunks, frames)
    return np.stack([features[s : s + frames] for s in starts])
