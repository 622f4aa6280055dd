"""Corpus manifests: one immutable record per utterance, and the readers that produce them.

Readers validate as they go and raise ManifestError naming file and line, so a typo in a label file
is found before any audio is decoded. A row without ratings is an unlabelled utterance, not an error.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepemocluster.data.audio import AUDIO_SUFFIXES, AudioSpan
from deepemocluster.errors import ManifestError

RATING_RANGE = (1.0, 7.0)
UNLABELLED_SPLIT = "Unlabelled"
_SPLIT_PATTERN = re.compile(r"^(Train|Development|Test\d*)$")
MSP_COLUMNS = (
    "FileName",
    "EmoClass",
    "EmoAct",
    "EmoVal",
    "EmoDom",
    "SpkrID",
    "Gender",
    "Split_Set",
)
MSP_CLASSES = frozenset("ASHUFDCNOX")


@dataclass(frozen=True)
class Utterance:
    """One audio file, or one segment of a long recording (``start_s``/``end_s`` set, id
    ``<file id>@<start>-<end>``), and what is known about it (ratings on the 1–7 scale, or None)."""

    id: str
    path: str
    split: str
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    emo_class: str | None = None
    speaker: str | None = None
    gender: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    @property
    def labelled(self) -> bool:
        return self.arousal is not None

    @property
    def span(self) -> AudioSpan:
        """The audio this utterance is: what the feature store decodes."""
        return AudioSpan(self.path, self.start_s, self.end_s)


Manifest = tuple[Utterance, ...]


@dataclass(frozen=True)
class _Columns:
    """Where each field lives in one CSV dialect."""

    path: str
    split: str
    ratings: tuple[str, str, str]
    emo_class: str
    speaker: str
    gender: str
    id: str | None = None


_MSP = _Columns(
    "FileName", "Split_Set", ("EmoAct", "EmoVal", "EmoDom"), "EmoClass", "SpkrID", "Gender"
)
_GENERIC = _Columns(
    "path", "split", ("arousal", "valence", "dominance"), "emo_class", "speaker", "gender", id="id"
)


def read_msp_podcast(root: str | Path, *, allow_absolute_paths: bool = False) -> Manifest:
    """``ROOT/Labels/labels_consensus.csv`` with audio in ``ROOT/Audios``."""
    root = Path(root)
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise ManifestError(f"{root}: not an MSP-Podcast layout (missing {labels})")
    return _read_csv(labels, _MSP, root / "Audios", allow_absolute_paths)


def read_csv_manifest(path: str | Path, *, allow_absolute_paths: bool = False) -> Manifest:
    """Generic CSV with columns ``path,split`` and optional ``id,arousal,valence,dominance,
    emo_class,speaker,gender``; relative paths are relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest file not found: {path}")
    return _read_csv(path, _GENERIC, path.parent, allow_absolute_paths)


def read_unlabelled(sources: Iterable[str | Path]) -> Manifest:
    """Audio from folders (recursive, wav/flac/ogg/mp3) or list files (one path per line)."""
    utterances = []
    for source in map(Path, sources):
        if source.is_dir():
            files = sorted(
                p
                for p in source.rglob("*")
                if p.suffix.lower() in AUDIO_SUFFIXES and not p.is_dir()
            )
            names = [p.relative_to(source).with_suffix("").as_posix() for p in files]
        elif source.is_file():
            lines = [ln.strip() for ln in source.read_text(encoding="utf-8-sig").splitlines()]
            files = [_resolve(source.parent / ln) for ln in lines if ln and not ln.startswith("#")]
            names = [p.with_suffix("").as_posix().lstrip("/") for p in files]
        else:
            raise ManifestError(f"unlabelled source not found: {source}")
        utterances += [
            Utterance(id=f"{source.name}/{n}", path=str(_resolve(p)), split=UNLABELLED_SPLIT)
            for p, n in zip(files, names, strict=True)
        ]
    return tuple(utterances)


def combine(*manifests: Manifest) -> Manifest:
    """Concatenate manifests; an utterance id must be unique across all of them."""
    seen: dict[str, str] = {}
    out = []
    for manifest in manifests:
        for utt in manifest:
            if utt.id in seen:
                raise ManifestError(
                    f"duplicate utterance id {utt.id!r}: {seen[utt.id]} and {utt.path}"
                )
            seen[utt.id] = utt.path
            out.append(utt)
    return tuple(out)


def check_audio_exists(manifest: Sequence[Utterance]) -> None:
    """Fail fast, listing the first missing files, before hours of work start."""
    missing = [u.path for u in manifest if not os.path.lexists(u.path)]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise ManifestError(f"{len(missing)} audio file(s) listed but missing, e.g.:\n  {shown}")


def _read_csv(labels: Path, cols: _Columns, audio_dir: Path, allow_abs: bool) -> Manifest:
    with labels.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        required = [cols.path, cols.split] + (list(cols.ratings) if cols is _MSP else [])
        absent = [c for c in required if c not in header]
        if absent:
            raise ManifestError(f"{labels}:1: missing column(s) {', '.join(absent)}")
        rows = [(reader.line_num, row) for row in reader]
    utterances, first_line = [], {}
    for line, row in rows:
        where = f"{labels}:{line}"
        utt = _parse_row(row, cols, where, audio_dir, allow_abs)
        if utt.id in first_line:
            raise ManifestError(
                f"{where}: duplicate id {utt.id!r} (first on line {first_line[utt.id]})"
            )
        first_line[utt.id] = line
        utterances.append(utt)
    return tuple(utterances)


def _parse_row(
    row: dict, cols: _Columns, where: str, audio_dir: Path, allow_abs: bool
) -> Utterance:
    name = (row.get(cols.path) or "").strip()
    if not name:
        raise ManifestError(f"{where}: empty {cols.path}")
    split = (row.get(cols.split) or "").strip()
    if not _SPLIT_PATTERN.match(split):
        raise ManifestError(
            f"{where}: unknown {cols.split} {split!r} (expected Train, Development or Test<N>)"
        )
    ratings = [_rating(row.get(c), c, where) for c in cols.ratings]
    given = [r is not None for r in ratings]
    if any(given) and not all(given):
        raise ManifestError(
            f"{where}: ratings must be all given or all empty ({', '.join(cols.ratings)})"
        )
    emo_class = _optional(row.get(cols.emo_class))
    if cols is _MSP and emo_class is not None and emo_class not in MSP_CLASSES:
        raise ManifestError(
            f"{where}: unknown EmoClass {emo_class!r} (expected one of {''.join(sorted(MSP_CLASSES))})"
        )
    uid = _optional(row.get(cols.id)) if cols.id else None
    return Utterance(
        id=uid or Path(name).stem,
        path=str(_audio_path(name, audio_dir, allow_abs, where)),
        split=split,
        arousal=ratings[0],
        valence=ratings[1],
        dominance=ratings[2],
        emo_class=emo_class,
        speaker=_optional(row.get(cols.speaker)),
        gender=_optional(row.get(cols.gender)),
    )


def _audio_path(name: str, audio_dir: Path, allow_abs: bool, where: str) -> Path:
    """Resolve a listed path; it may not leave the corpus folder unless absolute paths are allowed."""
    candidate = Path(name)
    if candidate.is_absolute():
        if not allow_abs:
            raise ManifestError(
                f"{where}: absolute path {name!r} refused (set data.allow_absolute_paths=true)"
            )
        return candidate
    resolved = _resolve(audio_dir / candidate)
    if not allow_abs and not resolved.is_relative_to(audio_dir.resolve()):
        raise ManifestError(f"{where}: path {name!r} leaves the corpus folder {audio_dir}")
    return resolved


def _resolve(path: Path) -> Path:
    """``path.resolve()``; a symlink loop is not followed but kept (normalised), so that the audio
    reader skips and reports that one file instead of the whole manifest failing."""
    try:
        return path.resolve()
    except RuntimeError:
        return Path(os.path.normpath(path.absolute()))


def _rating(text: str | None, column: str, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column}: {text!r} is not a number") from None
    lo, hi = RATING_RANGE
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ManifestError(f"{where}: column {column}: {value} is outside {lo:g}–{hi:g}")
    return value


def _optional(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None
