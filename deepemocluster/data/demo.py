"""Built-in demo corpus: deterministic synthetic emotional speech in MSP-Podcast layout.

No dataset can be downloaded where this project is built and tested, so it ships its own: the plan
(labels, speakers) is ``demo_plan``, the voice ``demo_voice``, the long unlabelled episodes
``demo_episodes``; this module writes the files. See docs/demo_corpus.md.

Layout written under ``root``::

    Audios/<id>.wav                  labelled Train / Development / Test1 utterances
    Unlabelled/<id>.wav              unlabelled utterances (not in the CSV)
    Unlabelled/episodes/<name>.wav   long unlabelled episodes (data.demo.n_episodes)
    Labels/labels_consensus.csv      FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    Labels/episode_turns.csv         where the speech in each episode is (with episodes only)
    demo.json                        stamp: the DemoConfig, format version and every file written
                                     with its size; written last
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, fields
from pathlib import Path, PurePosixPath

import soundfile as sf

from deepemocluster.config.schema import DemoConfig
from deepemocluster.data.demo_episodes import (
    EPISODE_DIR,
    TURNS_HEADER,
    TURNS_NAME,
    EpisodeSpec,
    plan_episodes,
    render_episode,
    turn_rows,
)
from deepemocluster.data.demo_plan import PlannedUtterance, plan_corpus, speakers_per_part
from deepemocluster.data.demo_voice import SAMPLE_RATE, render_utterance
from deepemocluster.errors import ConfigError
from deepemocluster.runtime.files import write_atomic

__all__ = ["generate_demo_corpus", "main", "plan_corpus", "read_stamp", "speakers_per_part"]

log = logging.getLogger(__name__)

# Bump whenever the generator's output changes, so stamped corpora on disk are regenerated.
FORMAT_VERSION = 2
STAMP_NAME = "demo.json"
CSV_HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
_FOLDERS = ("Audios", "Labels", "Unlabelled")
_LABELS = "Labels/labels_consensus.csv"
_TURNS = f"Labels/{TURNS_NAME}"
_WAV_HEADER = 44  # bytes libsndfile writes before the samples of a 16-bit mono PCM WAV
# below this much audio (200 utterances of 3 s), starting worker processes costs more than it saves
_MIN_PARALLEL_SECONDS = 600.0


# --------------------------------------------------------------------------------------------
# Files: write into a temp dir, stamp last, rename into place.


def generate_demo_corpus(root: Path, cfg: DemoConfig, workers: int | None = None) -> Path:
    """Make the demo corpus at ``root`` unless a complete one for ``cfg`` is already there.

    ``cfg`` may be a DemoConfig or any mapping with its fields (e.g. the ``data.demo`` node).
    A corpus is complete only when its stamp (written last) matches; a stale one is replaced
    atomically, but only when every file under ``root`` is one the generator wrote: a folder with
    anything else is never deleted. ``workers`` processes render the audio (default: up to 2); the
    files do not depend on it.
    """
    root = Path(root)
    cfg = _as_demo_config(cfg)
    stamp = _stamp(cfg)
    if _is_current(root, stamp):
        return root
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling_dir(root, "partial")
    try:
        began = time.perf_counter()
        count = _write_corpus(tmp, cfg, workers or min(2, os.cpu_count() or 1))
        record = {**stamp, "files": _written_files(tmp)}
        write_atomic(tmp / STAMP_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
        if _is_current(root, stamp):  # another process finished the same corpus meanwhile
            shutil.rmtree(tmp)
            return root
        _check_replaceable(root)  # again: files may have been added while this one was rendered
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("demo corpus: %d files in %s (%.1f s)", count, root, time.perf_counter() - began)
    return root


def read_stamp(root: Path) -> dict | None:
    """The stamp of a complete corpus at ``root``, or None."""
    try:
        return json.loads((Path(root) / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _stamp(cfg: DemoConfig) -> dict:
    """What names a corpus; the stamp on disk adds ``files``, the record of what was written."""
    return {"format_version": FORMAT_VERSION, "config": asdict(cfg)}


def _is_current(root: Path, stamp: dict) -> bool:
    """Whether ``root`` holds a complete corpus for ``stamp`` (its file list aside)."""
    found = read_stamp(root)
    return isinstance(found, dict) and all(found.get(k) == v for k, v in stamp.items())


def _as_demo_config(cfg: DemoConfig | Mapping) -> DemoConfig:
    if not isinstance(cfg, DemoConfig):
        cfg = DemoConfig(**{f.name: cfg[f.name] for f in fields(DemoConfig)})
    values = {f.name: getattr(cfg, f.name) for f in fields(DemoConfig)}
    counts = ("n_train", "n_dev", "n_test", "n_unlabelled", "n_speakers", "n_episodes")
    bad = [k for k in counts if int(values[k]) != values[k] or values[k] < 0]
    if bad:
        raise ConfigError(f"config key 'data.demo.{bad[0]}': must be a whole number >= 0")
    if cfg.n_train < 1:
        raise ConfigError("config key 'data.demo.n_train': need at least 1 Train utterance")
    if not 0 < cfg.min_seconds <= cfg.max_seconds:
        raise ConfigError("config keys 'data.demo.min_seconds'/'max_seconds': need 0 < min <= max")
    if cfg.episode_seconds <= 0:
        raise ConfigError("config key 'data.demo.episode_seconds': must be > 0")
    return DemoConfig(
        **{k: int(values[k]) if k in counts or k == "seed" else float(values[k]) for k in values}
    )


# --------------------------------------------------------------------------------------------
# Replacing a stale corpus: only what the generator provably wrote may be deleted.


def _check_replaceable(root: Path) -> None:
    """Refuse to replace ``root`` unless every entry in its whole tree is a folder of the layout
    or a file the generator wrote (by its record: same path, regular file, same size)."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ConfigError(f"data.root {root} exists and is not a folder")
    record, source = _record(read_stamp(root))
    foreign, changed = _unproven_entries(root, record)
    if foreign:
        _refuse(root, foreign, f"is not one of the files the demo generator wrote ({source})")
    if changed:
        _refuse(
            root,
            changed,
            f"is not the file the demo generator wrote there (other type or size, {source})",
        )


def _record(stamp: object) -> tuple[dict[str, int | None], str]:
    """The files the generator wrote (the stamp included), as {relative path: size, None = size
    unknown}, and where that knowledge comes from, for the error message.

    A stamp before the file list is rebuilt from its settings' plan, without rendering: a wav's
    size follows from its length; the turns CSV's would need the episodes rendered, so it is known
    by name only. A plan that does not match what is on disk only makes the check refuse.
    """
    if not isinstance(stamp, dict) or "format_version" not in stamp:
        return {}, f"there is no readable {STAMP_NAME}"
    if isinstance(stamp.get("files"), dict):
        return {**stamp["files"], STAMP_NAME: None}, f"by the file list in {STAMP_NAME}"
    try:
        files = _planned_files(_as_demo_config(DemoConfig(**stamp["config"])))
        source = f"by the settings in {STAMP_NAME}, which has no file list"
    except (KeyError, TypeError, ValueError, ConfigError):
        files, source = {}, f"{STAMP_NAME} has neither a file list nor settings this version reads"
    return {**files, STAMP_NAME: None}, source


def _planned_files(cfg: DemoConfig) -> dict[str, int | None]:
    plan = plan_corpus(cfg)
    episodes = plan_episodes(cfg, plan)
    files: dict[str, int | None] = {_utterance_path(u): _wav_size(u.seconds) for u in plan}
    files |= {_episode_path(e): _wav_size(e.seconds) for e in episodes}
    files[_LABELS] = len(_labels_csv([u for u in plan if u.split]))
    if episodes:
        files[_TURNS] = None
    return files


def _wav_size(seconds: float) -> int:
    return _WAV_HEADER + 2 * round(seconds * SAMPLE_RATE)


def _unproven_entries(root: Path, record: Mapping[str, int | None]) -> tuple[list[str], list[str]]:
    """(foreign, changed) relative paths under ``root``: entries the record does not list (a
    foreign folder counts once, with a trailing /, and is not entered), and recorded paths that
    are no longer a regular file of the recorded size. Links are entries, never followed."""
    folders = {*_FOLDERS, *(str(a) for p in record for a in PurePosixPath(p).parents)} - {"."}
    foreign: list[str] = []
    changed: list[str] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(root / folder) as entries:
            for entry in entries:
                path = f"{folder}/{entry.name}" if folder else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir and path in folders:
                    pending.append(path)
                elif is_dir:
                    foreign.append(f"{path}/")
                elif path not in record:
                    foreign.append(path)
                elif not _is_recorded_file(entry, record[path]):
                    changed.append(path)
    return sorted(foreign), sorted(changed)


def _is_recorded_file(entry: os.DirEntry, size: int | None) -> bool:
    if not entry.is_file(follow_symlinks=False):
        return False
    return size is None or entry.stat(follow_symlinks=False).st_size == size


def _refuse(root: Path, paths: list[str], why: str) -> None:
    more, it = (f"; {len(paths)} such entries in all", "them") if len(paths) > 1 else ("", "it")
    raise ConfigError(
        f"data.root {root}: {paths[0]} {why}{more}; refusing to replace the stale demo corpus "
        f"there, which would delete {it}: move {it} out of data.root, or point data.root at "
        "another folder"
    )


def _sibling_dir(root: Path, kind: str) -> Path:
    """A new, uniquely named hidden folder next to ``root`` (same file system, so renames are
    atomic). Unlike tempfile.mkdtemp it honours the umask: the corpus must not end up owner-only."""
    path = root.parent / f".{root.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _swap_into_place(tmp: Path, root: Path) -> None:
    """Rename the finished corpus to ``root``; an old one is renamed aside first, then deleted."""
    if root.exists():
        old = _sibling_dir(root, "old")
        root.rename(old / root.name)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(root)


# --------------------------------------------------------------------------------------------
# The corpus files.


def _write_corpus(out: Path, cfg: DemoConfig, workers: int) -> int:
    """All wavs and the label CSVs under ``out``; returns the number of audio files."""
    for sub in _FOLDERS:
        (out / sub).mkdir()
    plan = plan_corpus(cfg)
    episodes = plan_episodes(cfg, plan)
    if episodes:
        (out / "Unlabelled" / EPISODE_DIR).mkdir()
    episode_jobs = [(out / _episode_path(e), e, cfg.seed) for e in episodes]
    jobs = [(out / _utterance_path(u), u, cfg.seed) for u in plan]
    seconds = sum(u.seconds for u in plan) + sum(e.seconds for e in episodes)
    if workers > 1 and seconds >= _MIN_PARALLEL_SECONDS:
        # spawn, not fork: the caller may already run torch/faiss thread pools (docs/original_work.md).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            turns = pool.map(_render_episode_to_file, episode_jobs)  # the long jobs first
            list(pool.map(_render_to_file, jobs, chunksize=16))
            turns = list(turns)
    else:
        turns = [_render_episode_to_file(job) for job in episode_jobs]
        for job in jobs:
            _render_to_file(job)
    _write_labels(out / _LABELS, [u for u in plan if u.split])
    if episodes:
        (out / _TURNS).write_bytes(_csv(TURNS_HEADER, [r for rows in turns for r in rows]))
    return len(plan) + len(episodes)


def _written_files(out: Path) -> dict[str, int]:
    """The record the stamp keeps: every file under ``out`` with its size."""
    return {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}


def _utterance_path(utt: PlannedUtterance) -> str:
    return f"{'Audios' if utt.split else 'Unlabelled'}/{utt.name}"


def _episode_path(spec: EpisodeSpec) -> str:
    return f"Unlabelled/{EPISODE_DIR}/{spec.name}"


def _render_to_file(job: tuple[Path, PlannedUtterance, int]) -> None:
    path, utt, seed = job
    sf.write(path, render_utterance(utt, seed), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _render_episode_to_file(job: tuple[Path, EpisodeSpec, int]) -> list[list[object]]:
    path, spec, seed = job
    samples, spans = render_episode(spec, seed)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return turn_rows(f"{EPISODE_DIR}/{path.stem}", spans)


def _write_labels(path: Path, labelled: list[PlannedUtterance]) -> None:
    path.write_bytes(_labels_csv(labelled))


def _labels_csv(labelled: list[PlannedUtterance]) -> bytes:
    rows = [
        [u.name, u.emo_class, *(f"{x:.4f}" for x in u.avd), u.speaker.spk_id, u.speaker.gender,
         u.split]
        for u in labelled
    ]  # fmt: skip
    return _csv(CSV_HEADER, rows)


def _csv(header: tuple[str, ...], rows: list[list[object]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------------
# CLI: python -m deepemocluster.data.demo --out DIR [--seed N] [--n-train N] ...


def main(argv: list[str] | None = None) -> int:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.data.demo", description="Write the built-in demo corpus."
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="corpus folder (MSP-Podcast layout)"
    )
    for f in fields(DemoConfig):
        default = getattr(defaults, f.name)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"default {default}",
        )
    args = parser.parse_args(argv)
    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})
    began = time.perf_counter()
    try:
        root = generate_demo_corpus(args.out, cfg)
    except ConfigError as e:
        parser.exit(1, f"error: {e}\n")
    labelled = len(list((root / "Audios").glob("*.wav")))
    unlabelled = len(list((root / "Unlabelled").glob("*.wav")))
    episodes = len(list((root / "Unlabelled" / EPISODE_DIR).glob("*.wav")))
    print(
        f"demo corpus (seed {cfg.seed}) at {root}: {labelled} labelled + {unlabelled} unlabelled "
        f"wav files + {episodes} episodes, labels in {root / 'Labels' / 'labels_consensus.csv'} "
        f"({time.perf_counter() - began:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
