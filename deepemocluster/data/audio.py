"""Audio decoding and mel features: the only module that calls soundfile, soxr and librosa.

Any rate, channel count and common format (wav/flac/ogg/mp3 via libsndfile) becomes 16 kHz mono
float32. ``load_audio`` reads a whole file or one span of it, peak-normalised as in the reference;
``stream_audio`` reads a long recording block by block (resampled as a stream), so a 3-hour episode
never sits in memory whole. Files that cannot be used raise ``AudioError`` with a short reason
code, so a corpus pass can skip and report them instead of dying.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr

from deepemocluster.errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_SILENCE_PEAK = 1e-6


@dataclass(frozen=True)
class AudioSpan:
    """A whole file (``start_s``/``end_s`` None) or the part of it between two times."""

    path: str
    start_s: float | None = None
    end_s: float | None = None

    @property
    def whole(self) -> bool:
        return self.start_s is None

    def __str__(self) -> str:
        return self.path if self.whole else f"{self.path}@{self.start_s:.2f}-{self.end_s:.2f}"


def load_audio(
    path: str | Path,
    sample_rate: int,
    min_samples: int = 1,
    start_s: float | None = None,
    end_s: float | None = None,
) -> np.ndarray:
    """Decode ``path`` (or its ``start_s``–``end_s`` span) to mono float32 at ``sample_rate``,
    peak-normalised to 1.

    Raises AudioError with reason ``not_a_file``, ``permission_denied``, ``empty_file``,
    ``unreadable``, ``non_finite``, ``silent`` or ``too_short``.
    """
    path = Path(path)
    with _opened(path) as f:
        first = 0 if start_s is None else min(f.frames, round(start_s * f.samplerate))
        last = f.frames if end_s is None else min(f.frames, round(end_s * f.samplerate))
        if 0 < first < f.frames:
            f.seek(first)
        samples, rate = f.read(max(0, last - first), dtype="float32", always_2d=True), f.samplerate
    mono = _mono(samples, path)
    if rate != sample_rate and mono.size:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    if mono.size < min_samples:
        raise AudioError(path, "too_short", f"{mono.size} samples at {sample_rate} Hz")
    peak = float(np.abs(mono).max())
    if peak < _SILENCE_PEAK:
        raise AudioError(path, "silent", f"peak amplitude {peak:.2g}")
    return (mono / peak).astype(np.float32)


def stream_audio(path: str | Path, sample_rate: int, block_samples: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``sample_rate``, each exactly ``block_samples`` long but the last.

    Samples keep their level (no peak normalisation: that needs the whole file). Decoding errors
    in the middle of a file (a truncated FLAC, say) raise AudioError naming the file.
    """
    path = Path(path)
    with _opened(path) as f:
        rate = f.samplerate
        resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1)
        source_block = max(1, round(block_samples * rate / sample_rate))
        pending = np.zeros(0, dtype=np.float32)
        for raw in f.blocks(source_block, dtype="float32", always_2d=True):
            mono = _mono(raw, path)
            out = mono if resampler is None else resampler.resample_chunk(mono)
            pending = np.concatenate([pending, out])
            while pending.size >= block_samples:
                yield pending[:block_samples]
                pending = pending[block_samples:]
    if resampler is not None:
        pending = np.concatenate([pending, resampler.resample_chunk(pending[:0], last=True)])
    for first in range(0, pending.size, block_samples):
        yield pending[first : first + block_samples]


def audio_seconds(path: str | Path) -> float:
    """Duration from the file header (no decoding); raises AudioError like ``load_audio``."""
    with _opened(Path(path)) as f:
        return f.frames / f.samplerate


@contextmanager
def _opened(path: Path) -> Iterator[sf.SoundFile]:
    """The open file, with every way opening or reading it can fail turned into AudioError."""
    try:
        if not path.is_file():
            raise AudioError(path, "not_a_file")
        if path.stat().st_size == 0:
            raise AudioError(path, "empty_file")
        with sf.SoundFile(path) as f:
            yield f
    except PermissionError as e:
        raise AudioError(path, "permission_denied") from e
    except OSError as e:
        reason = "not_a_file" if e.errno == errno.ELOOP else "unreadable"
        raise AudioError(path, reason, str(e)) from e
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise AudioError(path, "unreadable", str(e)) from e


def _mono(samples: np.ndarray, path: Path) -> np.ndarray:
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(path, "non_finite", "NaN or Inf samples")
    return mono


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
