"""Audio decoding and mel features: the only module that calls soundfile and librosa.

Any rate, channel count and common format (wav/flac/ogg/mp3 via libsndfile) becomes 16 kHz mono
float32, peak-normalised as in the reference. Files that cannot be used raise ``AudioError`` with a
short reason code, so a corpus pass can skip and report them instead of dying.
"""

from __future__ import annotations

import errno
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from deepemocluster.errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_SILENCE_PEAK = 1e-6


def load_audio(path: str | Path, sample_rate: int, min_samples: int = 1) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``, peak-normalised to 1.

    Raises AudioError with reason ``not_a_file``, ``permission_denied``, ``empty_file``,
    ``unreadable``, ``non_finite``, ``silent`` or ``too_short``.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise AudioError(path, "not_a_file")
        if path.stat().st_size == 0:
            raise AudioError(path, "empty_file")
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except PermissionError as e:
        raise AudioError(path, "permission_denied") from e
    except OSError as e:
        reason = "not_a_file" if e.errno == errno.ELOOP else "unreadable"
        raise AudioError(path, reason, str(e)) from e
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise AudioError(path, "unreadable", str(e)) from e
    mono = samples.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioError(path, "non_finite", "NaN or Inf samples")
    if rate != sample_rate and mono.size:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    if mono.size < min_samples:
        raise AudioError(path, "too_short", f"{mono.size} samples at {sample_rate} Hz")
    peak = float(np.abs(mono).max())
    if peak < _SILENCE_PEAK:
        raise AudioError(path, "silent", f"peak amplitude {peak:.2g}")
    return (mono / peak).astype(np.float32)


def mel_features(
    audio: np.ndarray,
    *,
    sample_rate: int,
    n_mels: int,
    n_fft: int,
    hop_length: int,
    fmin: float,
    fmax: float | None,
    kind: str,
    log_offset: float,
) -> np.ndarray:
    """(frames, n_mels) float32 mel spectrogram: power (``mel``) or natural-log power (``log_mel``)."""
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        power=2.0,
    )
    if kind == "log_mel":
        mel = np.log(mel + log_offset)
    return np.ascontiguousarray(mel.T, dtype=np.float32)
