"""Prosodic statistics: eGeMAPS-like frame descriptors and their functionals, beside the mels.

``frame_descriptors`` turns decoded mono audio into one row per frame on the mel features' grid
(``audio.mel_features``: librosa's centred frames, frame t centred on sample t · hop, 1 + n // hop
frames), so row t here and row t of the mels describe the same instant. The columns
(``LLD_NAMES``):

- ``f0_st``: F0 in semitones above 27.5 Hz, 0 where unvoiced. ``librosa.yin``'s algorithm (YIN,
  de Cheveigné & Kawahara 2002: the first dip of the cumulative mean normalised difference d′
  below ``trough_threshold``, else its global minimum, refined by a parabola), written out here
  because the voicing decision needs d′ at the chosen period, which ``librosa.yin`` does not
  return (``librosa.pyin`` does, at ~14× real time on one core: docs/decisions.md). Then frames
  an octave off the local median of their voiced segment are moved back by octaves, and a
  3-frame median smooths the contour.
- ``voicing``: periodicity 1 − d′(period), clipped to [0, 1].
- ``voiced``: 1 where d′(period) < ``voicing_threshold`` and the frame is within ``silence_db``
  of the utterance's loudest frame, and a neighbouring frame is voiced too (no 1-frame voicing).
- ``loudness``: Σ over Bark bands of (A-weighted band power)^0.3, a Zwicker/Stevens-style proxy
  (eGeMAPS' loudness is of this kind), not calibrated sones. ``load_audio`` peak-normalises
  every file, so its level is relative to the file's peak.
- ``alpha_ratio``: 10·log10(energy 1–5 kHz / energy 50–1000 Hz), dB (negative where the low
  band dominates; rises with vocal effort).
- ``hammarberg``: 10·log10(strongest bin 0–2 kHz / strongest bin 2–5 kHz), dB.
- ``slope_0_500``, ``slope_500_1500``: least-squares slope of the dB power spectrum against
  frequency in those bands, dB per kHz.

Loudness and the spectral columns come from the same power spectrum as the mels (periodic Hann
window of ``n_fft``, centred, zero-padded); they and ``voicing`` are smoothed with a 3-frame
moving average (eGeMAPS' sma3). No BLAS product anywhere (FFTs and reductions only), so the
numbers do not depend on the thread count.

``functionals`` reads any frame range of those rows into the fixed vector named by ``names()``
(``FUNCTIONAL_NAMES``); ``chunk_functionals`` does it for the chunks ``chunking.chunk_starts``
lays out. A range without voiced frames gives 0 for every F0 and voiced-spectral value (the
voiced share, 0, says why), never NaN. ``prosody`` is the whole pass for one utterance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import median_filter
from scipy.signal import get_window

_FORMAT_VERSION = 1
_F0_REFERENCE_HZ = 27.5  # semitone 0, as eGeMAPS
_POWER_FLOOR = 1e-10  # of the power spectrum before taking dB (silent frames)
_OCTAVE_WINDOW = 25  # frames (400 ms) of the local F0 median that octave errors are judged by

LLD_NAMES = (
    "f0_st",
    "voicing",
    "voiced",
    "loudness",
    "alpha_ratio",
    "hammarberg",
    "slope_0_500",
    "slope_500_1500",
)
_SPECTRAL = ("alpha_ratio", "hammarberg", "slope_0_500", "slope_500_1500")
_COL = {name: i for i, name in enumerate(LLD_NAMES)}

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
    *(f"{n}_{s}" for n in _SPECTRAL for s in ("voiced_mean", "voiced_std", "unvoiced_mean")),
)
_FUN = {name: i for i, name in enumerate(FUNCTIONAL_NAMES)}


def names() -> tuple[str, ...]:
    """The functional vector's entries, in order (what ``functionals`` returns)."""
    return FUNCTIONAL_NAMES


@dataclass(frozen=True)
class ProsodySettings:
    """Everything that changes the numbers (and so would key a cache). The frame grid
    (``sample_rate``, ``hop_length``, ``n_fft``) must be the mel features' own."""

    sample_rate: int = 16000
    hop_length: int = 256
    n_fft: int = 512  # the spectral columns' window, as the mels'
    fmin: float = 50.0  # F0 search range, Hz: adult speech (the demo voice spans 50–550 Hz)
    fmax: float = 600.0
    f0_frame_length: int = 1024  # YIN frame (64 ms): two periods of fmin must fit
    trough_threshold: float = 0.1  # d′ dip that picks the period (YIN's absolute threshold)
    voicing_threshold: float = 0.4  # d′ at the period below which a frame is voiced
    silence_db: float = 50.0  # frames this far below the loudest frame are unvoiced

    @classmethod
    def from_features(cls, features, **overrides) -> ProsodySettings:
        """On the grid of a ``features.FeatureSettings`` (anything with these three fields)."""
        grid = {k: getattr(features, k) for k in ("sample_rate", "hop_length", "n_fft")}
        return cls(**{**grid, **overrides})

    @property
    def frame_s(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def key(self) -> str:
        text = json.dumps({"v": _FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


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
    settings: ProsodySettings = ProsodySettings(),
) -> Prosody:
    """The whole pass: ``frame_descriptors`` of ``audio`` (16 kHz mono float), functionals of
    each chunk (``starts`` from ``chunking.chunk_starts``, ``frames`` long) and of the utterance."""
    rows = frame_descriptors(audio, settings)
    return Prosody(
        rows,
        chunk_functionals(rows, starts, frames, settings.frame_s),
        functionals(rows, settings.frame_s),
    )


# --------------------------------------------------------------------------------------------
# Frame descriptors


def frame_descriptors(
    audio: np.ndarray, settings: ProsodySettings = ProsodySettings()
) -> np.ndarray:
    """(1 + len(audio) // hop_length, len(LLD_NAMES)) float32 rows, one per mel frame."""
    s = settings
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"mono audio expected, got shape {audio.shape}")
    n_frames = 1 + audio.size // s.hop_length
    power = _power_spectrum(audio, s)
    f0_hz, dprime = _yin(audio, s)
    band_db = 10 * np.log10(power.sum(axis=1) + _POWER_FLOOR)
    loud_enough = band_db > band_db.max() - s.silence_db
    voiced = (dprime < s.voicing_threshold) & loud_enough & (f0_hz > 0)
    voiced &= _with_voiced_neighbour(voiced)

    out = np.zeros((n_frames, len(LLD_NAMES)), dtype=np.float64)
    semitones = _fix_octaves(12 * np.log2(np.maximum(f0_hz, 1e-3) / _F0_REFERENCE_HZ), voiced)
    out[:, _COL["f0_st"]] = np.where(voiced, _median3(semitones, voiced), 0.0)
    out[:, _COL["voicing"]] = _smooth3(np.clip(1 - dprime, 0, 1), np.ones(n_frames, bool))
    out[:, _COL["voiced"]] = voiced
    spectral = _spectral_columns(power, s)
    everywhere = np.ones(n_frames, dtype=bool)
    for name, values in spectral.items():
        out[:, _COL[name]] = _smooth3(values, everywhere)
    return out.astype(np.float32)


def _frames(audio: np.ndarray, length: int, hop: int) -> np.ndarray:
    """(1 + n // hop, length) views, frame t centred on sample t · hop (zero padding), as
    librosa's ``center=True`` with ``pad_mode='constant'``."""
    padded = np.pad(audio, (length // 2, length // 2))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop]


def _power_spectrum(audio: np.ndarray, s: ProsodySettings) -> np.ndarray:
    """(frames, n_fft // 2 + 1) |STFT|² with a periodic Hann window, the mels' own spectrum."""
    window = get_window("hann", s.n_fft, fftbins=True).astype(np.float32)
    frames = _frames(audio.astype(np.float32), s.n_fft, s.hop_length) * window
    spectrum = scipy.fft.rfft(frames, axis=1)
    return spectrum.real**2 + spectrum.imag**2


def _yin(audio: np.ndarray, s: ProsodySettings) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz) and d′ at the chosen period per frame: ``librosa.yin``'s algorithm (its
    difference function d(τ) = 2·(r(0) − r(τ)) − Σ_{m<τ} x[m]², whose growing last term keeps
    subharmonics from winning), written out so that d′ at the period comes back too."""
    min_period = max(1, int(np.floor(s.sample_rate / s.fmax)))
    max_period = int(np.ceil(s.sample_rate / s.fmin))
    if max_period >= s.f0_frame_length // 2:
        raise ValueError(
            f"f0_frame_length {s.f0_frame_length} holds fewer than two periods of "
            f"fmin={s.fmin} Hz: use at least {2 * max_period + 2}"
        )
    frames = _frames(audio, s.f0_frame_length, s.hop_length)
    n = scipy.fft.next_fast_len(s.f0_frame_length + max_period, real=True)  # no wrap-around
    spectrum = scipy.fft.rfft(frames, n=n, axis=1)
    acf = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n, axis=1)[:, : max_period + 1]
    head_energy = np.cumsum(np.square(frames[:, :max_period]), axis=1)  # Σ_{m≤τ−1} x[m]²
    diff = np.zeros_like(acf)
    diff[:, 1:] = np.maximum(2 * (acf[:, :1] - acf[:, 1:]) - head_energy, 0.0)
    lags = np.arange(1, max_period + 1)
    running = np.cumsum(diff[:, 1:], axis=1) / lags
    floor = 1e-12 * (acf[:, :1] + 1e-30)
    dprime = np.ones_like(diff)
    dprime[:, 1:] = diff[:, 1:] / np.maximum(running, floor)

    search = dprime[:, min_period : max_period + 1]
    inner = search[:, 1:-1]
    trough = (inner <= search[:, :-2]) & (inner < search[:, 2:]) & (inner < s.trough_threshold)
    pick = np.where(trough.any(axis=1), trough.argmax(axis=1) + 1, search.argmin(axis=1))
    rows = np.arange(search.shape[0])
    at = np.clip(pick, 1, search.shape[1] - 2)
    left, mid, right = search[rows, at - 1], search[rows, at], search[rows, at + 1]
    curve = left + right - 2 * mid
    inside = (pick > 0) & (pick < search.shape[1] - 1) & (curve > 0)
    shift = np.where(inside, 0.5 * (left - right) / np.where(inside, curve, 1.0), 0.0)
    period = min_period + pick + np.clip(shift, -1.0, 1.0)
    silent = acf[:, 0] <= 0.0
    return np.where(silent, 0.0, s.sample_rate / period), np.where(silent, 1.0, search[rows, pick])


def _fix_octaves(semitones: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """A voiced frame an octave (± 3 semitones) or more away from the median of its voiced
    segment's frames around it (``_OCTAVE_WINDOW`` frames) is moved by whole octaves towards it.
    YIN's octave errors last a frame or a few; a monotone glide, however fast, is its own
    running median, so only a rise and fall of over 9 semitones within 200 ms is cut short."""
    out = semitones.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    for first, end in zip(edges[::2], edges[1::2], strict=True):
        segment = out[first:end]
        local = median_filter(segment, size=min(_OCTAVE_WINDOW, len(segment)), mode="nearest")
        away = segment - local
        octaves = np.round(away / 12)
        octaves[np.abs(away - 12 * octaves) >= 3] = 0
        out[first:end] = segment - 12 * octaves
    return out


def _median3(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of t − 1, t, t + 1 where all three are valid, ``values`` elsewhere."""
    out = values.copy()
    if len(values) >= 3:
        three = np.stack([values[:-2], values[1:-1], values[2:]])
        whole = valid[:-2] & valid[1:-1] & valid[2:]
        out[1:-1] = np.where(whole, np.median(three, axis=0), values[1:-1])
    return out


def _spectral_columns(power: np.ndarray, s: ProsodySettings) -> dict[str, np.ndarray]:
    freqs = np.fft.rfftfreq(s.n_fft, 1.0 / s.sample_rate)

    def band(lo: float, hi: float) -> slice:
        inside = np.flatnonzero((freqs >= lo) & (freqs < hi))
        return slice(int(inside[0]), int(inside[-1]) + 1)

    weighted = power * _a_weighting(freqs)
    edges = np.flatnonzero(np.diff(np.floor(_bark(freqs)))) + 1
    bands = np.add.reduceat(weighted, np.concatenate([[0], edges]), axis=1)
    db = 10 * np.log10(power + _POWER_FLOOR)
    out = {"loudness": np.power(bands, 0.3).sum(axis=1)}
    low, high = power[:, band(50, 1000)].sum(axis=1), power[:, band(1000, 5000)].sum(axis=1)
    out["alpha_ratio"] = 10 * np.log10((high + _POWER_FLOOR) / (low + _POWER_FLOOR))
    peak_low, peak_high = (
        power[:, band(0, 2000)].max(axis=1),
        power[:, band(2000, 5000)].max(axis=1),
    )
    out["hammarberg"] = 10 * np.log10((peak_low + _POWER_FLOOR) / (peak_high + _POWER_FLOOR))
    for name, lo, hi in (("slope_0_500", 0, 500), ("slope_500_1500", 500, 1500)):
        sl = band(lo, hi + 1e-6)  # both band edges included
        f_khz = freqs[sl] / 1000
        weights = (f_khz - f_khz.mean()) / np.sum(np.square(f_khz - f_khz.mean()))
        out[name] = (db[:, sl] * weights).sum(axis=1)
    return out


def _bark(freqs: np.ndarray) -> np.ndarray:
    """Critical-band rate (Zwicker & Terhardt 1980)."""
    return 13 * np.arctan(0.00076 * freqs) + 3.5 * np.arctan(np.square(freqs / 7500))


def _a_weighting(freqs: np.ndarray) -> np.ndarray:
    """IEC 61672 A-weighting as a power gain (0 dB at 1 kHz)."""
    f2 = np.square(np.maximum(freqs, 1e-3))
    ra = (12194.0**2 * f2**2) / (
        (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    )
    return np.square(ra) * 10 ** (2.0 / 10)


def _with_voiced_neighbour(voiced: np.ndarray) -> np.ndarray:
    before = np.concatenate([[False], voiced[:-1]])
    after = np.concatenate([voiced[1:], [False]])
    return before | after


def _smooth3(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """3-frame moving average over the valid frames among t − 1, t, t + 1 (``values`` itself
    where no neighbour is valid)."""
    v = np.where(valid, values, 0.0)
    w = valid.astype(np.float64)
    total = v + np.concatenate([[0.0], v[:-1]]) + np.concatenate([v[1:], [0.0]])
    count = w + np.concatenate([[0.0], w[:-1]]) + np.concatenate([w[1:], [0.0]])
    return np.where(count > 0, total / np.maximum(count, 1.0), values)


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
    voiced = x[:, :, _COL["voiced"]] > 0.5
    everywhere = np.ones_like(voiced)
    for prefix, column, valid in (("f0", "f0_st", voiced), ("loudness", "loudness", everywhere)):
        values = x[:, :, _COL[column]]
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
    loud = x[:, :, _COL["loudness"]]
    inner = loud[:, 1:-1]
    median = out[:, _FUN["loudness_p50"], None]
    peaks = (inner > loud[:, :-2]) & (inner >= loud[:, 2:]) & (inner > median)
    put("loudness_peaks_per_s", peaks.sum(axis=1) / seconds)

    put("voiced_share", voiced.mean(axis=1))
    put("voicing_mean", x[:, :, _COL["voicing"]].mean(axis=1))
    runs = _runs(voiced)
    put("voiced_segments_per_s", runs["voiced_count"] / seconds)
    for label in ("voiced", "unvoiced"):
        put(f"{label}_segment_mean_s", runs[f"{label}_mean"] * frame_s)
        put(f"{label}_segment_std_s", runs[f"{label}_std"] * frame_s)
    for name in _SPECTRAL:
        values = x[:, :, _COL[name]]
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
