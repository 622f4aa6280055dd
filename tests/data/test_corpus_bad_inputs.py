"""Bad audio and odd label files through one real (tiny) training run.

One corpus holds every case of cases.AUDIO_CASES twice: as a labelled Train row of the MSP-Podcast
label file and as a file of an unlabelled folder, on top of the demo corpus. The label file itself
is written with a BOM, CRLF line ends and an extra column, and holds a row without ratings and a
row with an absolute path (allowed by config). One run must finish and account for every file:
used (with the right number of feature frames) or listed with its reason in skipped.csv. A second
run with a lower data.max_skip_ratio must fail, naming the ratio and the key.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.config import load_config
from deepemocluster.data.features import FeatureSettings, FeatureStore, entry_key
from deepemocluster.training.run import run
from tests.support.cli import run_id_of
from tests.support.reliability_cases import (
    AUDIO_CASES,
    ROOT_REASON,
    RUNNING_AS_ROOT,
    USED,
    AudioCase,
    _sound,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stray_signals_fail_the_test")]

UNLABELLED_DIR = "bad_unlabelled"


@dataclass(frozen=True)
class BadRun:
    args: list[str]
    cfg: object
    root: Path
    run_dir: Path
    skipped: dict[str, str]  # path → reason, from the run's skipped.csv
    train_ids: list[str]  # utterances.txt: the training utterances, labelled ones first
    n_labelled: int
    n_unlabelled: int
    paths: dict[tuple[str, str], Path]  # (side, case id) → file
    extra_paths: dict[str, Path]
    n_demo: dict[str, int]
    test: dict[str, float]


def _cases() -> list[AudioCase]:
    return [c for c in AUDIO_CASES if not (c.root_skip and RUNNING_AS_ROOT)]


def _build_corpus(demo_root: Path, base: Path) -> tuple[Path, dict, dict, dict]:
    root = base / "corpus"
    shutil.copytree(demo_root, root, symlinks=True)
    labels = root / "Labels" / "labels_consensus.csv"
    with labels.open(newline="", encoding="utf-8-sig") as f:
        header, *rows = list(csv.reader(f))
    n_demo = {
        "labelled_train": sum(r[header.index("Split_Set")] == "Train" for r in rows),
        "unlabelled": len(list((root / "Unlabelled").rglob("*.wav"))),
    }
    paths: dict[tuple[str, str], Path] = {}
    unlabelled = base / UNLABELLED_DIR
    unlabelled.mkdir()
    new_rows = []
    for case in _cases():
        name = f"bad_{case.id}{case.suffix}"
        paths["labelled", case.id] = root / "Audios" / name
        paths["unlabelled", case.id] = unlabelled / name
        case.make(paths["labelled", case.id])
        case.make(paths["unlabelled", case.id])
        new_rows.append([name, "N", "4.0", "4.0", "4.0", "spk_bad", "Female", "Train"])
    # tolerated label-file quirks: a row without ratings (= unlabelled), an allowed absolute path
    extra = {"no_ratings": root / "Audios" / "no_ratings.wav", "absolute": base / "abs_ok.wav"}
    for path in extra.values():
        _sound(1.5)(path)
    new_rows.append(["no_ratings.wav", "", "", "", "", "spk_bad", "Male", "Train"])
    new_rows.append([str(extra["absolute"]), "H", "5.5", "5.0", "4.5", "spk_bad", "Male", "Train"])
    # BOM, CRLF and an extra column
    text = "\r\n".join(",".join([*r, c]) for r, c in zip([header, *rows, *new_rows], ["Comment"] + ["ok"] * (len(rows) + len(new_rows)), strict=True))  # fmt: skip
    labels.write_bytes("\ufeff".encode() + (text + "\r\n").encode())
    return root, paths, extra, n_demo


@pytest.fixture(scope="module")
def bad_run(demo, tmp_path_factory) -> BadRun:
    base = tmp_path_factory.mktemp("bad_inputs")
    root, paths, extra, n_demo = _build_corpus(demo.root, base)
    args = demo.overrides(
        base / "runs",
        "bad-inputs",
        "data.format=msp_podcast",
        f"data.root={root}",
        f"data.unlabelled=[{root / 'Unlabelled'},{base / UNLABELLED_DIR}]",
        "data.allow_absolute_paths=true",
        "data.max_skip_ratio=0.2",
        f"features.store={base / 'features'}",
        "train.epochs=1",
    )
    cfg = load_config(overrides=args)
    test = run(cfg)
    run_dir = base / "runs" / "bad-inputs"
    with (run_dir / "skipped.csv").open(newline="") as f:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    (data_line,) = [
        ln for ln in (run_dir / "train.log").read_text().splitlines() if " data: " in ln
    ]
    n_lab, n_unl = map(int, re.search(r"(\d+) labelled \+ (\d+) unlabelled", data_line).groups())
    train_ids = (run_dir / "utterances.txt").read_text().split()
    return BadRun(
        args, cfg, root, run_dir, skipped, train_ids, n_lab, n_unl, paths, extra, n_demo, test
    )


def _utterance_id(side: str, path: Path) -> str:
    return path.stem if side == "labelled" else f"{UNLABELLED_DIR}/{path.stem}"


def test_the_run_finishes_and_logs_its_skip_list(bad_run):
    assert np.isfinite(bad_run.test["test/ccc_mean"])
    client = MlflowClient(bad_run.cfg.tracking.uri)
    r = client.get_run(run_id_of(bad_run.run_dir))
    assert r.info.status == "FINISHED"
    assert "skipped.csv" in {a.path for a in client.list_artifacts(r.info.run_id)}


def test_every_file_is_used_or_listed_and_nothing_else_is_skipped(bad_run):
    cases = _cases()
    expected_skips = {
        str(bad_run.paths[side, c.id]): c.expected(side)
        for side in ("labelled", "unlabelled")
        for c in cases
        if c.expected(side) not in (USED, None)
    }
    assert bad_run.skipped == expected_skips
    used = {
        side: sum(c.expected(side) == USED for c in cases) for side in ("labelled", "unlabelled")
    }
    # every used bad file trains: labelled rows as labelled, the rating-less row as unlabelled
    assert bad_run.n_labelled == bad_run.n_demo["labelled_train"] + used["labelled"] + 1
    assert bad_run.n_unlabelled == bad_run.n_demo["unlabelled"] + used["unlabelled"] + 1
    assert len(bad_run.train_ids) == bad_run.n_labelled + bad_run.n_unlabelled
    assert len(set(bad_run.train_ids)) == len(bad_run.train_ids)


@pytest.mark.parametrize("side", ["labelled", "unlabelled"])
@pytest.mark.parametrize("case", AUDIO_CASES, ids=[c.id for c in AUDIO_CASES])
def test_bad_file_outcome(bad_run, case, side):
    if case.root_skip and RUNNING_AS_ROOT:
        pytest.skip(ROOT_REASON)
    path, expected = bad_run.paths[side, case.id], case.expected(side)
    uid = _utterance_id(side, path)
    if expected is None:  # never an entry: a directory in a scanned folder is not a file
        assert uid not in bad_run.train_ids and str(path) not in bad_run.skipped
    elif expected != USED:
        assert bad_run.skipped[str(path)] == expected
        assert uid not in bad_run.train_ids
    else:
        assert str(path) not in bad_run.skipped and uid in bad_run.train_ids
        feats = _features(bad_run.cfg, path)
        expected_frames = 1 + round(case.seconds * 16000) // 256
        assert abs(feats.shape[0] - expected_frames) <= case.frame_tolerance, feats.shape
        assert np.isfinite(feats).all() and feats.std() > 0.1  # real content, not padding


def test_tolerated_label_quirks(bad_run):
    # the file had a BOM, CRLF ends and an extra column: the demo rows all made it in
    assert bad_run.n_labelled > bad_run.n_demo["labelled_train"]
    assert "no_ratings" in bad_run.train_ids[bad_run.n_labelled :]  # rating-less row: unlabelled
    assert "abs_ok" in bad_run.train_ids[: bad_run.n_labelled]  # absolute path, allowed by config
    assert not any("\r" in i or "\ufeff" in i for i in bad_run.train_ids)


def test_too_many_bad_files_is_a_clear_failure(bad_run, main_in_process):
    cfg = bad_run.cfg
    out = main_in_process(
        "train", [*bad_run.args, "tracking.run_name=too-many", "data.max_skip_ratio=0.05"]
    )
    assert out.code == 1
    n_bad = len(bad_run.skipped)
    assert f"{n_bad} of " in out.errors and "data.max_skip_ratio=0.05" in out.errors
    ratio = re.search(r"\((\d+\.\d)% > data\.max_skip_ratio", out.errors)
    assert ratio and 5.0 < float(ratio.group(1)) < 20.0, out.errors
    run_dir = Path(cfg.tracking.runs_dir) / "too-many"
    assert str(run_dir / "skipped.csv") in out.errors
    with (run_dir / "skipped.csv").open(newline="") as f:
        assert {row["path"] for row in csv.DictReader(f)} == set(bad_run.skipped)
    assert not (run_dir / "checkpoint_last.pt").exists()


def _features(cfg, path: Path) -> np.ndarray:
    store = FeatureStore(cfg.features.store, FeatureSettings.from_config(cfg.features))
    return np.asarray(store.load(entry_key(path)))
