"""Long recordings → speaking turns in MSP-Podcast's range: the one place that cuts audio.

A recording is streamed in blocks (``audio.stream_audio``) through silero-vad, which gives one
speech probability per 32 ms window and carries its state from block to block, so memory does not
grow with the recording. Speech regions come from silero's own hysteresis (a stretch quieter than
``pause_s`` does not end a turn); a turn longer than ``max_s`` is split at its quietest point
(lowest smoothed energy) into pieces of at least ``min_s``; shorter turns are dropped.

A segment is an utterance everywhere downstream: the manifest record carries (path, start_s,
end_s) and the id ``<file id>@<start>-<end>``. The segment list of each file is cached under
``<features.store>/segments/<settings key>/``, keyed like feature entries by the file's identity,
so a second run does not run the detector again.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from deepemocluster.data.audio import audio_seconds, stream_audio
from deepemocluster.data.features import entry_key
from deepemocluster.data.manifest import UNLABELLED_SPLIT, Manifest, Utterance
from deepemocluster.errors import AudioError
from deepemocluster.runtime.files import write_atomic

log = logging.getLogger(__name__)

VAD_RATE = 16000  # silero-vad's rate
WINDOW = 512  # samples per speech probability (32 ms)
BLOCK_WINDOWS = 512  # windows per decoded block (16.4 s), the sequence model's largest call
_CONTEXT = 64  # samples of the previous window the model sees with each window
_QUIET_WINDOWS = 5  # energy is smoothed over 160 ms before looking for the quietest point
_PRIME_WINDOWS = 16  # 0.5 s of silence the detector hears before each file (see _vad)
NO_SPEECH = "no speech found"
TOO_SHORT = "no speech turn of segment.min_s or longer"
SEGMENTS_CSV_HEADER = ("id", "path", "start_s", "end_s")


@dataclass(frozen=True)
class SegmentSettings:
    """The ``segment`` config group; every field but ``backend`` changes the segments."""

    threshold: float
    pause_s: float
    pad_s: float
    min_s: float
    max_s: float
    backend: str = "auto"

    @classmethod
    def from_config(cls, segment) -> SegmentSettings:
        return cls(**{name: segment[name] for name in cls.__dataclass_fields__})

    @property
    def key(self) -> str:
        """Cache key: the settings and the silero-vad release (its model may change). Not the
        backend: the JIT and ONNX models give the same probabilities (to 1e-7)."""
        fields = {k: v for k, v in asdict(self).items() if k != "backend"}
        text = json.dumps({"silero_vad": version("silero-vad"), **fields}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FileSegments:
    """What segmentation found in one recording; times in seconds."""

    duration_s: float
    speech_s: float  # detected speech before splitting and dropping
    segments: tuple[tuple[float, float], ...]

    @property
    def reason(self) -> str | None:
        """Why the file gives no segment (a skip reason), or None."""
        if self.segments:
            return None
        return NO_SPEECH if self.speech_s == 0 else TOO_SHORT


# --- speech probabilities ------------------------------------------------------------------------


class _SequenceVad:
    """silero's sequence ONNX model: one call per block of windows, its LSTM state (and the
    64-sample context) carried from call to call, so blocks give what one whole pass would."""

    def __init__(self, session) -> None:
        self.session = session
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros_like(self.h)
        self.context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        contexts = np.empty((len(frames), _CONTEXT), dtype=np.float32)
        contexts[0] = self.context
        contexts[1:] = frames[:-1, -_CONTEXT:]
        feed = {"input": np.concatenate([contexts, frames], axis=1), "h": self.h, "c": self.c}
        probs, self.h, self.c = self.session.run(["speech_probs", "hn", "cn"], feed)
        self.context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


class _JitVad:
    """silero's TorchScript model, one window per call; it keeps its state itself."""

    def __init__(self, model) -> None:
        self.model = model

    def reset(self) -> None:
        self.model.reset_states()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            probs = [self.model(torch.from_numpy(f), VAD_RATE).item() for f in frames]
        return np.asarray(probs, dtype=np.float32)


def resolve_backend(backend: str) -> str:
    """``auto`` → ``onnx`` when onnxruntime is importable (about 4× faster), else ``jit``."""
    if backend != "auto":
        return backend
    return "onnx" if importlib.util.find_spec("onnxruntime") else "jit"


def _silero():
    """The package, imported without letting its import set torch's thread count to 1."""
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


@lru_cache(maxsize=1)
def _onnx_session():
    """One session for all threads (``run`` is thread-safe; the state lives in _SequenceVad)."""
    return _silero().load_silero_vad(sequence=True).session


_per_thread = threading.local()


def _vad(backend: str) -> _SequenceVad | _JitVad:
    """This thread's detector, reset and primed with 0.5 s of silence. From its zero state, a
    file that opens on faint low-frequency noise can leave the model deaf to the speech that
    follows for many seconds (measured on the demo episodes: mean speech probability 0.4
    instead of 0.8 over the first 18 s); a short silence first puts it in its resting state,
    as if the recording were preceded by silence. The package's own loader reads the model
    files shipped in its wheel; nothing is downloaded."""
    cache = _per_thread.__dict__.setdefault("vads", {})
    if backend not in cache:
        if backend == "onnx":
            cache[backend] = _SequenceVad(_onnx_session())
        else:
            cache[backend] = _JitVad(_silero().load_silero_vad(onnx=False))
    vad = cache[backend]
    vad.reset()
    vad(np.zeros((_PRIME_WINDOWS, WINDOW), dtype=np.float32))
    return vad


@contextmanager
def _one_torch_thread(backend: str) -> Iterator[None]:
    """The JIT model's tiny per-window ops run 4× slower on two intra-op threads than on one."""
    if backend != "jit":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def speech_probabilities(
    path: str | Path, backend: str, block_windows: int = BLOCK_WINDOWS
) -> tuple[np.ndarray, np.ndarray, int]:
    """(speech probability, mean energy) per 32 ms window, and the length in 16 kHz samples,
    decoding the file one block at a time. Raises AudioError."""
    vad = _vad(resolve_backend(backend))
    probs, energy, n = [], [], 0
    for block in stream_audio(path, VAD_RATE, block_windows * WINDOW):
        n += block.size
        frames = np.zeros((-(-block.size // WINDOW), WINDOW), dtype=np.float32)
        frames.reshape(-1)[: block.size] = block
        probs.append(vad(frames))
        energy.append(np.mean(np.square(frames), axis=1))
    if not probs:
        return np.zeros(0, np.float32), np.zeros(0, np.float32), 0
    return np.concatenate(probs), np.concatenate(energy), n


# --- regions → segments ----------------------------------------------------------------------


def speech_regions(probs: np.ndarray, n_samples: int, s: SegmentSettings) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, by silero's own state machine: speech starts at
    ``threshold``, ends below ``threshold - 0.15`` held for ``pause_s``, padded by ``pad_s``."""
    regions = _silero().get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=VAD_RATE,
        threshold=s.threshold,
        min_silence_duration_ms=s.pause_s * 1000,
        speech_pad_ms=s.pad_s * 1000,
        audio_length_samples=n_samples,
    )
    return [(r["start"], r["end"]) for r in regions]


def split_turn(
    start: int, end: int, quiet: np.ndarray, s: SegmentSettings
) -> list[tuple[int, int]]:
    """Split a turn longer than ``max_s`` at the quietest window centre that leaves ``min_s``
    on both sides, then each side again until every piece fits; pieces in time order.
    ``quiet``: smoothed energy per window."""
    min_n, max_n = round(s.min_s * VAD_RATE), round(s.max_s * VAD_RATE)
    pieces, todo = [], [(start, end)]
    while todo:  # a stack, not recursion: a 2-hour lecture without pauses is ~2,600 pieces deep
        a, b = todo.pop()
        if b - a <= max_n:
            pieces.append((a, b))
            continue
        first = -(-(a + min_n - WINDOW // 2) // WINDOW)
        last = min((b - min_n - WINDOW // 2) // WINDOW, len(quiet) - 1)
        if first <= last:
            cut = (first + int(np.argmin(quiet[first : last + 1]))) * WINDOW + WINDOW // 2
        else:  # the windows end before the padded turn does: cut in the middle
            cut = (a + b) // 2
        todo += [(cut, b), (a, cut)]
    return pieces


def cut_segments(
    probs: np.ndarray, energy: np.ndarray, n_samples: int, s: SegmentSettings
) -> FileSegments:
    """Speech regions → turns of ``min_s``–``max_s``, in time order."""
    regions = speech_regions(probs, n_samples, s)
    kernel = np.ones(_QUIET_WINDOWS) / _QUIET_WINDOWS
    quiet = np.convolve(energy, kernel, mode="same") if energy.size else energy
    min_n = round(s.min_s * VAD_RATE)
    pieces = [p for a, b in regions for p in split_turn(a, b, quiet, s) if p[1] - p[0] >= min_n]
    return FileSegments(
        duration_s=round(n_samples / VAD_RATE, 3),
        speech_s=round(sum(b - a for a, b in regions) / VAD_RATE, 3),
        segments=tuple((round(a / VAD_RATE, 3), round(b / VAD_RATE, 3)) for a, b in pieces),
    )


def segment_file(path: str | Path, s: SegmentSettings) -> FileSegments:
    """Stream one recording through the detector and cut it; raises AudioError."""
    with _one_torch_thread(resolve_backend(s.backend)):
        return _segment(path, s)


def _segment(path: str | Path, s: SegmentSettings) -> FileSegments:
    probs, energy, n = speech_probabilities(path, s.backend)
    return cut_segments(probs, energy, n, s)


# --- the cache and the pool ------------------------------------------------------------------


class SegmentIndex:
    """Segment lists of files under ``<store>/segments/<settings key>/``, computed once."""

    def __init__(self, store: str | Path, settings: SegmentSettings) -> None:
        self.settings = settings
        self.dir = Path(store) / "segments" / settings.key

    def get(self, paths: Sequence[str], workers: int = 1) -> dict[str, FileSegments | AudioError]:
        """Each path's segments (from the cache, or found now), or the AudioError it raised."""
        out: dict[str, FileSegments | AudioError] = {}
        todo = []
        for path in paths:
            try:
                cached = self._entry(path)
            except AudioError as e:
                out[path] = e
                continue
            if cached.exists():
                out[path] = _read_entry(cached)
            else:
                todo.append((path, cached))
        backend = resolve_backend(self.settings.backend)
        with _one_torch_thread(backend), ThreadPoolExecutor(max(1, workers)) as pool:
            for path, result in zip(
                (p for p, _ in todo), pool.map(self._compute, todo), strict=True
            ):
                out[path] = result
        return {path: out[path] for path in paths}

    def _entry(self, path: str) -> Path:
        key = entry_key(path)
        return self.dir / key[:2] / f"{key}.json"

    def _compute(self, job: tuple[str, Path]) -> FileSegments | AudioError:
        path, target = job
        try:
            found = _segment(path, self.settings)
        except AudioError as e:  # not cached: a fixed file is retried next run
            return e
        write_atomic(target, json.dumps(asdict(found)))
        return found


def _read_entry(path: Path) -> FileSegments:
    data = json.loads(path.read_text())
    return FileSegments(
        data["duration_s"], data["speech_s"], tuple((a, b) for a, b in data["segments"])
    )


def segment_pool(
    manifest: Manifest, mode: str, index: SegmentIndex, workers: int = 1
) -> tuple[Manifest, list[tuple[str, str]]]:
    """Replace each unlabelled recording that ``mode`` selects by its segments (utterances of
    their own, in time order); labelled utterances are never cut. ``auto`` cuts recordings
    longer than ``segment.max_s``. Returns the new manifest and (path, reason) of the files
    that gave no segment or could not be decoded."""
    if mode == "never":
        return manifest, []
    chosen = {u.id for u in manifest if _wanted(u, mode, index.settings.max_s)}
    found = index.get(sorted({u.path for u in manifest if u.id in chosen}), workers)
    out, skipped = [], []
    for utt in manifest:
        result = found[utt.path] if utt.id in chosen else None
        if result is None:
            out.append(utt)
        elif isinstance(result, AudioError):
            log.warning("segmentation skipped %s", result)
            skipped.append((utt.path, result.reason))
        elif result.reason:
            skipped.append((utt.path, result.reason))
        else:
            out += [segment_utterance(utt, a, b) for a, b in result.segments]
    if chosen:
        log.info(
            "segments: %d unlabelled recordings → %d segments; %d gave none or failed",
            len(chosen),
            sum(u.start_s is not None for u in out),
            len(skipped),
        )
    return tuple(out), skipped


def _wanted(utt: Utterance, mode: str, max_s: float) -> bool:
    if utt.split != UNLABELLED_SPLIT or utt.labelled or utt.start_s is not None:
        return False
    if mode == "always":
        return True
    try:
        return audio_seconds(utt.path) > max_s
    except AudioError:  # left whole: the feature pass skips it and reports why
        return False


def segment_utterance(utt: Utterance, start_s: float, end_s: float) -> Utterance:
    """The record of one segment of ``utt``'s recording."""
    return replace(utt, id=f"{utt.id}@{start_s:.2f}-{end_s:.2f}", start_s=start_s, end_s=end_s)


def write_segments_csv(path: str | Path, manifest: Sequence[Utterance]) -> int:
    """``id,path,start_s,end_s`` of every segment in ``manifest`` (a run folder's
    ``segments.csv``); returns the number of rows."""
    rows = [(u.id, u.path, u.start_s, u.end_s) for u in manifest if u.start_s is not None]
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SEGMENTS_CSV_HEADER)
        writer.writerows(rows)
    return len(rows)
