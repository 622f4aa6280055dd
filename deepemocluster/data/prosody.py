"""Prosodic frame descriptors, eGeMAPS-like, beside the mels (their functionals:
``prosody_functionals.py``).

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
SPECTRAL_NAMES = ("alpha_ratio", "hammarberg", "slope_0_500", "slope_500_1500")
LLD_COLUMN = {name: i for i, name in enumerate(LLD_NAMES)}


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
    out[:, LLD_COLUMN["f0_st"]] = np.where(voiced, _median3(semitones, voiced), 0.0)
    out[:, LLD_COLUMN["voicing"]] = _smooth3(np.clip(1 - dprime, 0, 1), np.ones(n_frames, bool))
    out[:, LLD_COLUMN["voiced"]] = voiced
    spectral = _spectral_columns(power, s)
    everywhere = np.ones(n_frames, dtype=bool)
    for name, values in spectral.items():
        out[:, LLD_COLUMN[name]] = _smooth3(values, everywhere)
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
