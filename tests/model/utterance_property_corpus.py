"""A small corpus whose label only the whole utterance shows, written as real wav files in the
MSP-Podcast layout (``ROOT/Audios``, ``ROOT/Labels/labels_consensus.csv``).

Every utterance is four tones of ``SEGMENT_S`` seconds with ``GAP_S`` of silence between them,
each tone low or high (``LOW_HZ``, ``HIGH_HZ``) by a fair coin. With ``CHUNKING`` (4 chunks of 31
frames) each chunk holds exactly one tone. The label is how one-sided the pitch is over the turn:
|#high − #low| ∈ {0, 2, 4}, and every rating is 1 + that (1, 3 or 5). Whatever the label, each
tone is low or high with probability ½, so a single chunk says nothing about it: any function of
one chunk has the same mean for every label, and so has the mean of such functions over an
utterance's chunks — a model that averages chunk predictions cannot learn it. A model that pools
the chunk embeddings first and then predicts can: the pooled vector moves along a line with the
share of high tones, and the label is the distance from its middle.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SEGMENT_S, GAP_S, N_SEGMENTS = 0.5, 0.1, 4
# 2.3 s → 144 frames at hop 256; 4 chunks of 31 frames start at frames 0, 38, 75 and 113, and
# each chunk's analysis windows stay inside one tone and the silence around it
CHUNKING = ["chunking.n_chunks=4", "chunking.frames=31"]
LOW_HZ, HIGH_HZ = 220.0, 220.0 * 2**1.5
HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")


def utterance(high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tones with three harmonics (random phases) and 10 ms fades, silence between them."""
    t = np.arange(round(SEGMENT_S * SR)) / SR
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    gap = np.zeros(round(GAP_S * SR))
    parts = []
    for i, is_high in enumerate(high):
        f = HIGH_HZ if is_high else LOW_HZ
        phases = rng.uniform(0, 2 * np.pi, 3)
        tone = sum(
            np.sin(2 * np.pi * h * f * t + p) / h for h, p in zip((1, 2, 3), phases, strict=True)
        )
        parts += [tone * fade] + ([gap] if i < len(high) - 1 else [])
    return (np.concatenate(parts) * rng.uniform(0.2, 0.6)).astype(np.float32)


def write_corpus(root: Path, n_train: int = 160, n_dev: int = 8, n_test: int = 80, seed: int = 0):
    """Write the corpus under ``root`` (deterministic for a seed) and return ``root``."""
    rng = np.random.default_rng(seed)
    (root / "Audios").mkdir(parents=True, exist_ok=True)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    splits = ["Train"] * n_train + ["Development"] * n_dev + ["Test1"] * n_test
    rows = []
    for i, split in enumerate(splits):
        high = rng.integers(0, 2, N_SEGMENTS).astype(bool)
        name = f"utt{i:04d}.wav"
        sf.write(root / "Audios" / name, utterance(high, rng), SR)
        rating = f"{1 + abs(2 * int(high.sum()) - N_SEGMENTS):.1f}"
        rows.append([name, "N", rating, rating, rating, f"spk{i % 4}", "Female", split])
    with (root / "Labels" / "labels_consensus.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return root
