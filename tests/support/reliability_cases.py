"""The reliability matrix as data: what each bad input is, how to make it, and what must happen.

docs/reliability.md shows the same matrix as tables; tests/test_docs.py checks that they agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
USED = "used"


def _tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * 220.0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return x if channels == 1 else np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1)


def _sound(seconds: float = 1.0, sr: int = SR, channels: int = 1, **kwargs) -> Callable:
    def write(path: Path) -> None:
        sf.write(path, _tone(seconds, sr, channels), sr, **kwargs)

    return write


def _samples(data: np.ndarray, subtype: str = "FLOAT") -> Callable:
    def write(path: Path) -> None:
        sf.write(path, data, SR, subtype=subtype)

    return write


def _truncated(path: Path) -> None:
    _sound()(path)
    path.write_bytes(path.read_bytes()[:20])


def _zero_bytes(path: Path) -> None:
    path.touch()


def _directory(path: Path) -> None:
    path.mkdir()


def _unreadable(path: Path) -> None:
    _sound()(path)
    path.chmod(0)


def _symlink_loop(path: Path) -> None:
    other = path.with_suffix(".loop")  # not an audio suffix: only `path` is listed
    path.symlink_to(other.name)
    other.symlink_to(path.name)


def _with(index: int, value: float) -> np.ndarray:
    x = _tone(1.0).astype(np.float32)
    x[index] = value
    return x


_square = np.sign(np.sin(2 * np.pi * 150.0 * np.arange(SR) / SR))  # full-scale, hard-clipped


@dataclass(frozen=True)
class AudioCase:
    """One bad (or merely unusual) audio file. ``labelled``/``unlabelled``: the skip reason
    written to skipped.csv, ``used``, or None when the input never becomes a corpus entry."""

    id: str
    suffix: str
    make: Callable[[Path], None]
    labelled: str | None
    unlabelled: str | None
    seconds: float | None = None  # duration at 16 kHz of a used file (its frame count follows)
    frame_tolerance: int = 1
    root_skip: bool = False  # chmod does not stop root from reading

    def expected(self, side: str) -> str | None:
        return self.labelled if side == "labelled" else self.unlabelled


AUDIO_CASES = [
    AudioCase("truncated_header", ".wav", _truncated, "unreadable", "unreadable"),
    AudioCase("zero_bytes", ".wav", _zero_bytes, "empty_file", "empty_file"),
    AudioCase("clip_0.05s", ".wav", _sound(0.05), USED, USED, 0.05),
    AudioCase("clip_60s", ".wav", _sound(60.0), USED, "no speech found", 60.0),  # unlabelled: cut
    AudioCase("all_zeros", ".wav", _samples(np.zeros(SR), "PCM_16"), "silent", "silent"),
    AudioCase("nan_samples", ".wav", _samples(_with(100, np.nan)), "non_finite", "non_finite"),
    AudioCase("inf_samples", ".wav", _samples(_with(100, np.inf)), "non_finite", "non_finite"),
    AudioCase("clipped_square", ".wav", _samples(_square, "PCM_16"), USED, USED, 1.0),
    AudioCase("stereo", ".wav", _sound(channels=2), USED, USED, 1.0),
    AudioCase("rate_8k", ".wav", _sound(sr=8000), USED, USED, 1.0),
    AudioCase("rate_22.05k", ".wav", _sound(sr=22050), USED, USED, 1.0),
    AudioCase("rate_48k", ".wav", _sound(sr=48000), USED, USED, 1.0),
    AudioCase("pcm_8bit", ".wav", _sound(subtype="PCM_U8"), USED, USED, 1.0),
    AudioCase("pcm_24bit", ".wav", _sound(subtype="PCM_24"), USED, USED, 1.0),
    AudioCase("float_wav", ".wav", _sound(subtype="FLOAT"), USED, USED, 1.0),
    AudioCase("flac", ".flac", _sound(sr=44100), USED, USED, 1.0),
    AudioCase("ogg_vorbis", ".ogg", _sound(sr=22050, format="OGG", subtype="VORBIS"), USED, USED, 1.0, 2),
    AudioCase("mp3", ".mp3", _sound(sr=44100, format="MP3", subtype="MPEG_LAYER_III"), USED, USED, 1.0, 8),
    AudioCase("directory_named_wav", ".wav", _directory, "not_a_file", None),
    AudioCase("unreadable_file", ".wav", _unreadable, "permission_denied", "permission_denied", root_skip=True),
    AudioCase("symlink_loop", ".wav", _symlink_loop, "not_a_file", "not_a_file"),
]  # fmt: skip

RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_REASON = "running as root: chmod 000 does not stop root from reading the file"


@dataclass(frozen=True)
class LabelCase:
    """One broken label file: how to change the valid rows, and what the error must say.
    Rows are MSP-Podcast rows (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender,
    Split_Set); ``line`` is the file line the message must name (1 = header)."""

    id: str
    edit: Callable[[list[str], list[list[str]]], None]
    line: int
    message: str


def _drop_column(name: str):
    def edit(header: list[str], rows: list[list[str]]) -> None:
        i = header.index(name)
        del header[i]
        for row in rows:
            del row[i]

    return edit


def _set(row: int, column: str, value: str):
    def edit(header: list[str], rows: list[list[str]]) -> None:
        rows[row][header.index(column)] = value

    return edit


def _duplicate(row: int, of: int):
    def edit(header: list[str], rows: list[list[str]]) -> None:
        rows[row][0] = rows[of][0]

    return edit


def _empty_some_ratings(header: list[str], rows: list[list[str]]) -> None:
    rows[2][header.index("EmoVal")] = ""


LABEL_CASES = [
    LabelCase("missing_column", _drop_column("EmoVal"), 1, "missing column(s) EmoVal"),
    LabelCase("non_numeric", _set(1, "EmoAct", "high"), 3, "column EmoAct: 'high' is not a number"),
    LabelCase("out_of_range_0", _set(0, "EmoVal", "0"), 2, "column EmoVal: 0.0 is outside 1–7"),
    LabelCase("out_of_range_8", _set(3, "EmoDom", "8"), 5, "column EmoDom: 8.0 is outside 1–7"),
    LabelCase("some_ratings_empty", _empty_some_ratings, 4, "ratings must be all given or all empty"),
    LabelCase("empty_filename", _set(1, "FileName", ""), 3, "empty FileName"),
    LabelCase("empty_split", _set(2, "Split_Set", ""), 4, "unknown Split_Set ''"),
    LabelCase("unknown_split", _set(2, "Split_Set", "Validation"), 4, "unknown Split_Set 'Validation'"),
    LabelCase("duplicate_filename", _duplicate(4, of=1), 6, "duplicate id 'utt001' (first on line 3)"),
    LabelCase("unknown_emoclass", _set(0, "EmoClass", "Z"), 2, "unknown EmoClass 'Z'"),
    LabelCase("path_leaves_corpus", _set(1, "FileName", "../../outside.wav"), 3, "leaves the corpus folder"),
    LabelCase("absolute_path", _set(1, "FileName", "/tmp/x.wav"), 3, "set data.allow_absolute_paths=true"),
]  # fmt: skip

# Label-file quirks that are accepted (documented tolerances), all exercised by the bad-input run.
LABEL_TOLERANCES = ["extra_columns", "bom", "crlf", "all_ratings_empty", "absolute_path_allowed"]


@dataclass(frozen=True)
class ConfigCase:
    id: str
    overrides: tuple[str, ...]  # added to the tiny config; "key=" drops that key from it
    key: str  # the key the message must name
    message: str
    needs_data: bool  # refused after the corpus is read (the check needs it), before training


CONFIG_CASES = [
    ConfigCase("unknown_key", ("train.epochz=3",), "train.epochz", "not in 'TrainConfig'", False),
    ConfigCase("wrong_type", ("train.epochs=many",), "train.epochs", "could not be converted to Integer", False),
    ConfigCase("missing_mandatory", ("data.root=",), "data.root", "mandatory value not set", False),
    ConfigCase("negative_epochs", ("train.epochs=-1",), "train.epochs", "must be > 0", False),
    ConfigCase("k_above_chunks", ("cluster.k=100000",), "cluster.k", "larger than the", True),
    ConfigCase("frames_above_longest", ("chunking.frames=4000",), "chunking.frames", "longer than the longest", True),
]  # fmt: skip
