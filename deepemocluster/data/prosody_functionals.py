"""Functionals of the prosodic frame descriptors (``prosody.py``): any frame range of those rows
into the fixed vector named by ``names()`` (``FUNCTIONAL_NAMES``), eGeMAPS-like (mean, spread,
20/50/80th percentiles, rises and falls, voiced and unvoiced segments); ``chunk_functionals``
does it for the chunks ``chunking.chunk_starts`` lays out. A range without voiced frames gives
0 for every F0 and voiced-spectral value (the voiced share, 0, says why), never NaN. ``prosody``
is the whole pass for one utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepemocluster.data.prosody import (
    LLD_COLUMN,
    SPECTRAL_NAMES,
    ProsodySettings,
    frame_descriptors,
)

# Contour functionals of F0 (voiced frames, semitones; slopes in semitones per second) and of
# loudness (every frame; slopes in loudness units per second). ``*_rise_*``/``*_fall_*``: mean and
# std of the slopes of the contour's monotone runs (falls as magnitudes, so ≥ 0).
_CONTOUR = ("p20", "p50", "p80", "range_20_80", "rise_mean", "rise_std", "fall_mean", "fall_std")
FUNCTIONAL_NAMES = (
    *(f"f0_{s}" for s in ("mean", "std", *_CONTOUR)),
    *(f"loudness_{s}" for s in ("mean", "cov", *_CONTOUR)),
    "loudness_peaks_per_s",  # local maxima of loudness above the range's median
    "voiced_share",  # voiced frames / frames
    "voicing_mean",  # mean periodicity over every frame
    "voiced_segments_per_s",
    "voiced_segment_mean_s",
    "voiced_segment_std_s",
    "unvoiced_segment_mean_s",
    "unvoiced_segment_std_s",
    *(f"{n}_{s}" for n in SPECTRAL_NAMES for s in ("voiced_mean", "voiced_std", "unvoiced_mean")),
)
_FUN = {name: i for i, name in enumerate(FUNCTIONAL_NAMES)}


def names() -> tuple[str, ...]:
    """The functional vector's entries, in order (what ``functionals`` returns)."""
    return FUNCTIONAL_NAMES


@dataclass(frozen=True)
class Prosody:
    """One utterance: frame rows, one functional vector per chunk and one for the whole."""

    frames: np.ndarray  # (n_frames, len(LLD_NAMES)) float32
    chunks: np.ndarray  # (n_chunks, len(FUNCTIONAL_NAMES)) float32
    utterance: np.ndarray  # (len(FUNCTIONAL_NAMES),) float32


def prosody(
    audio: np.ndarray,
    starts: np.ndarray,
    frames: int,
    settings: ProsodySettings | None = None,
) -> Prosody:
    """The whole pass: ``frame_descriptors`` of ``audio`` (16 kHz mono float), functionals of
    each chunk (``starts`` from ``chunking.chunk_starts``, ``frames`` long) and of the utterance."""
    settings = settings or ProsodySettings()
    rows = frame_descriptors(audio, settings)
    return Prosody(
        rows,
        chunk_functionals(rows, starts, frames, settings.frame_s),
        functionals(rows, settings.frame_s),
    )


# --------------------------------------------------------------------------------------------
# Functionals


def functionals(
    rows: np.ndarray, frame_s: float, start: int = 0, stop: int | None = None
) -> np.ndarray:
    """(len(FUNCTIONAL_NAMES),) float32 over ``rows[start:stop]`` (frame descriptors); every
    value is finite. An empty range (``start`` past the end) gives zeros."""
    x = np.asarray(rows[start:stop], dtype=np.float64)
    if len(x) == 0:
        return np.zeros(len(FUNCTIONAL_NAMES), dtype=np.float32)
    return _batch_functionals(x[None], frame_s)[0].astype(np.float32)


def chunk_functionals(
    rows: np.ndarray, starts: np.ndarray, frames: int, frame_s: float
) -> np.ndarray:
    """(len(starts), len(FUNCTIONAL_NAMES)) float32: ``functionals`` of each chunk's frames,
    computed together. A chunk that runs past the end (an utterance shorter than a chunk, which
    ``chunk_utterance`` pads) covers the frames there are."""
    starts = np.asarray(starts, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.float64)
    lengths = np.clip(len(rows) - starts, 0, frames)
    out = np.zeros((len(starts), len(FUNCTIONAL_NAMES)), dtype=np.float32)
    for length in np.unique(lengths[lengths > 0]):
        which = np.flatnonzero(lengths == length)
        batch = np.stack([rows[first : first + length] for first in starts[which]])
        out[which] = _batch_functionals(batch, frame_s)
    return out


def _batch_functionals(x: np.ndarray, frame_s: float) -> np.ndarray:
    """(B, L, len(LLD_NAMES)) float64 ranges of equal length L ≥ 1 → (B, len(FUNCTIONAL_NAMES))
    float64, all at once (a chunk grid is one call, not one per chunk)."""
    batch, length, _ = x.shape
    out = np.zeros((batch, len(FUNCTIONAL_NAMES)))

    def put(name: str, values: np.ndarray) -> None:
        out[:, _FUN[name]] = values

    seconds = length * frame_s
    voiced = x[:, :, LLD_COLUMN["voiced"]] > 0.5
    everywhere = np.ones_like(voiced)
    for prefix, column, valid in (("f0", "f0_st", voiced), ("loudness", "loudness", everywhere)):
        values = x[:, :, LLD_COLUMN[column]]
        mean, std = _masked_mean_std(values, valid)
        put(f"{prefix}_mean", mean)
        if prefix == "f0":
            put("f0_std", std)
        else:
            put("loudness_cov", np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), 0.0))
        p20, p50, p80 = _masked_percentiles(values, valid, (20.0, 50.0, 80.0))
        put(f"{prefix}_p20", p20)
        put(f"{prefix}_p50", p50)
        put(f"{prefix}_p80", p80)
        put(f"{prefix}_range_20_80", p80 - p20)
        for name, value in _run_slopes(values, valid, frame_s).items():
            put(f"{prefix}_{name}", value)
    loud = x[:, :, LLD_COLUMN["loudness"]]
    inner = loud[:, 1:-1]
    median = out[:, _FUN["loudness_p50"], None]
    peaks = (inner > loud[:, :-2]) & (inner >= loud[:, 2:]) & (inner > median)
    put("loudness_peaks_per_s", peaks.sum(axis=1) / seconds)

    put("voiced_share", voiced.mean(axis=1))
    put("voicing_mean", x[:, :, LLD_COLUMN["voicing"]].mean(axis=1))
    runs = _runs(voiced)
    put("voiced_segments_per_s", runs["voiced_count"] / seconds)
    for label in ("voiced", "unvoiced"):
        put(f"{label}_segment_mean_s", runs[f"{label}_mean"] * frame_s)
        put(f"{label}_segment_std_s", runs[f"{label}_std"] * frame_s)
    for name in SPECTRAL_NAMES:
        values = x[:, :, LLD_COLUMN[name]]
        mean, std = _masked_mean_std(values, voiced)
        put(f"{name}_voiced_mean", mean)
        put(f"{name}_voiced_std", std)
        put(f"{name}_unvoiced_mean", _masked_mean_std(values, ~voiced)[0])
    return out


def _masked_mean_std(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, mean and (population) std of the masked values; 0 and 0 where none is."""
    count = np.maximum(mask.sum(axis=1), 1)
    mean = np.where(mask, values, 0.0).sum(axis=1) / count
    var = np.where(mask, np.square(values - mean[:, None]), 0.0).sum(axis=1) / count
    return mean, np.sqrt(var)


def _masked_percentiles(
    values: np.ndarray, mask: np.ndarray, qs: tuple[float, ...]
) -> list[np.ndarray]:
    """Per row, percentiles of the masked values (linear interpolation, as ``np.percentile``);
    0 where none is."""
    count = mask.sum(axis=1)
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    ordered[np.isinf(ordered)] = 0.0
    rows = np.arange(len(values))
    out = []
    for q in qs:
        position = q / 100 * np.maximum(count - 1, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, np.maximum(count - 1, 0))
        frac = position - low
        value = ordered[rows, low] * (1 - frac) + ordered[rows, high] * frac
        out.append(np.where(count > 0, value, 0.0))
    return out


def _run_slopes(values: np.ndarray, valid: np.ndarray, frame_s: float) -> dict[str, np.ndarray]:
    """Per row, mean and std of the slopes of the contour's monotone runs (a run: frame-to-frame
    steps of one sign between valid frames; its slope: its total change over its duration),
    rising and falling apart; falls as magnitudes. 0 where a row has no such run."""
    batch = len(values)
    out = {k: np.zeros(batch) for k in ("rise_mean", "rise_std", "fall_mean", "fall_std")}
    if values.shape[1] < 2:
        return out
    step = np.diff(values, axis=1)
    sign = np.sign(step) * (valid[:, 1:] & valid[:, :-1])
    # a 0 step after each row, so that no run continues into the next row
    step = np.concatenate([step, np.zeros((batch, 1))], axis=1).ravel()
    sign = np.concatenate([sign, np.zeros((batch, 1))], axis=1).ravel()
    row = np.repeat(np.arange(batch), values.shape[1])
    first = np.concatenate([[True], sign[1:] != sign[:-1]])
    run = np.cumsum(first) - 1
    slope = np.bincount(run, weights=step) / (np.bincount(run) * frame_s)
    run_sign, run_row = sign[first], row[first]
    for label, which in (("rise", run_sign > 0), ("fall", run_sign < 0)):
        out[f"{label}_mean"], out[f"{label}_std"] = _grouped_mean_std(
            np.abs(slope[which]), run_row[which], batch
        )
    return out


def _runs(flags: np.ndarray) -> dict[str, np.ndarray]:
    """Per row, the number of runs of True, and mean and std of the lengths of the runs of True
    (``voiced_*``) and of False (``unvoiced_*``), in frames."""
    batch, length = flags.shape
    marked = np.concatenate([flags.astype(np.int8), np.full((batch, 1), -1, np.int8)], axis=1)
    marked = marked.ravel()  # the -1 after each row ends every run there
    row = np.repeat(np.arange(batch), length + 1)
    first = np.concatenate([[True], marked[1:] != marked[:-1]])
    lengths = np.bincount(np.cumsum(first) - 1).astype(np.float64)
    value, run_row = marked[first], row[first]
    out = {"voiced_count": np.bincount(run_row[value == 1], minlength=batch)}
    for label, which in (("voiced", value == 1), ("unvoiced", value == 0)):
        out[f"{label}_mean"], out[f"{label}_std"] = _grouped_mean_std(
            lengths[which], run_row[which], batch
        )
    return out


def _grouped_mean_std(
    values: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    count = np.bincount(groups, minlength=n_groups)
    safe = np.maximum(count, 1)
    mean = np.bincount(groups, weights=values, minlength=n_groups) / safe
    centred = values - mean[groups]
    var = np.bincount(groups, weights=np.square(centred), minlength=n_groups) / safe
    return mean, np.sqrt(var)
