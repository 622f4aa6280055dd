"""Shared fixtures: real audio files of any kind, tiny MSP-Podcast-layout corpora, configs.

Everything is written to ``tmp_path`` with the real soundfile/numpy; nothing is mocked. The
fixtures of training runs, servers and browsers live in tests/support/fixtures.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest_plugins = ["tests.support.fixtures"]

SR = 16000
MSP_HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
# Helpers are handed out as fixtures (``tone``, ``msp_rows``, ``write_csv``) rather than imported:
# test modules never ``import conftest``.


def _tone(
    seconds: float,
    sr: int = SR,
    freq: float = 440.0,
    amp: float = 0.5,
    channels: int = 1,
) -> np.ndarray:
    """A sine tone (samples,) or (samples, channels); later channels are quieter copies."""
    t = np.arange(round(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return x
    return np.stack([x * (1.0 - 0.3 * c) for c in range(channels)], axis=1)


def _write_csv(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    bom: bool = False,
    crlf: bool = False,
) -> Path:
    """Write a label/manifest file exactly as asked (optional UTF-8 BOM and CRLF line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + buf.getvalue().encode())
    return path


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    return _tone


@pytest.fixture
def write_csv() -> Callable[..., Path]:
    return _write_csv


@pytest.fixture
def msp_rows() -> Callable[..., list[list[object]]]:
    return _msp_rows


@pytest.fixture
def write_audio(tmp_path: Path) -> Callable[..., Path]:
    """``write_audio("a/b.flac", seconds=0.3, sr=8000, channels=2, subtype="PCM_24", data=...)``.

    Relative names land under ``tmp_path``; the format follows the suffix unless ``format`` says.
    """

    def write(
        name: str | Path,
        seconds: float = 0.3,
        *,
        sr: int = SR,
        freq: float = 440.0,
        amp: float = 0.5,
        channels: int = 1,
        subtype: str | None = None,
        format: str | None = None,
        data: np.ndarray | None = None,
    ) -> Path:
        path = Path(name)
        path = path if path.is_absolute() else tmp_path / path
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = _tone(seconds, sr, freq, amp, channels) if data is None else data
        if format is None and path.suffix.lower() == ".mp3":
            format, subtype = "MP3", subtype or "MPEG_LAYER_III"
        if format is None and path.suffix.lower() == ".ogg":
            format, subtype = "OGG", subtype or "VORBIS"
        sf.write(path, samples, sr, subtype=subtype, format=format)
        return path

    return write


def _msp_rows(n_train: int = 6, n_dev: int = 2, n_test: int = 2) -> list[list[object]]:
    """Deterministic, valid label rows: utt000.wav … with varied classes and 1–7 ratings."""
    splits = ["Train"] * n_train + ["Development"] * n_dev + ["Test1"] * n_test
    classes = "NAHSUFDC"
    return [
        [
            f"utt{i:03d}.wav",
            classes[i % len(classes)],
            f"{1 + (i * 0.7) % 6:.2f}",
            f"{1 + (i * 1.3) % 6:.2f}",
            f"{1 + (i * 2.1) % 6:.2f}",
            f"spk{i % 3}",
            "Female" if i % 2 else "Male",
            split,
        ]
        for i, split in enumerate(splits)
    ]


@pytest.fixture
def make_msp_corpus(tmp_path: Path, write_audio: Callable[..., Path]) -> Callable[..., Path]:
    """Write ``ROOT/Audios/*.wav`` + ``ROOT/Labels/labels_consensus.csv``; returns ROOT.

    ``rows`` default to :func:`_msp_rows`; audio is a short tone per row (a different pitch each,
    so features differ) unless ``audio=False``.
    """

    def make(
        root: str = "corpus",
        rows: Sequence[Sequence[object]] | None = None,
        *,
        header: Sequence[str] = MSP_HEADER,
        audio: bool = True,
        seconds: float = 0.3,
        bom: bool = False,
        crlf: bool = False,
    ) -> Path:
        base = tmp_path / root
        rows = _msp_rows() if rows is None else rows
        _write_csv(base / "Labels" / "labels_consensus.csv", header, rows, bom=bom, crlf=crlf)
        (base / "Audios").mkdir(parents=True, exist_ok=True)
        if audio:
            for i, row in enumerate(rows):
                write_audio(base / "Audios" / str(row[0]), seconds, freq=200.0 + 37.0 * i)
        return base

    return make
