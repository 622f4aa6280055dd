"""Broken label files and bad configs through the command line: exit code 1 and one message that
names the file and line (labels) or the key (configs), before any training. The command line runs
in this process (``main(argv)``) to save an interpreter start per case."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from .cases import CONFIG_CASES, LABEL_CASES, ConfigCase, LabelCase

HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]


def _valid_rows() -> list[list[str]]:
    splits = ["Train"] * 6 + ["Development"] * 2 + ["Test1"] * 2
    return [
        [f"utt{i:03d}.wav", "NAHS"[i % 4], "3.5", "4.0", "4.5", f"spk{i % 3}", "Male", split]
        for i, split in enumerate(splits)
    ]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_labels") / "runs"


@pytest.mark.parametrize("case", LABEL_CASES, ids=[c.id for c in LABEL_CASES])
def test_broken_label_file_is_refused_naming_file_and_line(
    case: LabelCase, demo_dirs, runs_dir, tmp_path, main_in_process
):
    root = tmp_path / "corpus"
    (root / "Audios").mkdir(parents=True)
    header, rows = list(HEADER), _valid_rows()
    case.edit(header, rows)
    labels = root / "Labels" / "labels_consensus.csv"
    labels.parent.mkdir()
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    out = main_in_process(
        "train",
        demo_dirs.overrides(runs_dir, case.id, "data.format=msp_podcast", f"data.root={root}"),
    )
    assert out.code == 1
    assert f"{labels}:{case.line}:" in out.errors, out.errors
    assert case.message in out.errors, out.errors
    assert "Traceback" not in out.errors
    assert not (runs_dir / case.id / "checkpoint_last.pt").exists()


def test_label_errors_are_found_before_audio_is_missed(
    demo_dirs, runs_dir, tmp_path, main_in_process
):
    """Rows are checked before files: a broken row is reported even when no audio exists."""
    root = tmp_path / "corpus"
    labels = root / "Labels" / "labels_consensus.csv"
    labels.parent.mkdir(parents=True)
    (root / "Audios").mkdir()
    rows = _valid_rows()
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])
    out = main_in_process(
        "train",
        demo_dirs.overrides(runs_dir, "no-audio", "data.format=msp_podcast", f"data.root={root}"),
    )
    assert out.code == 1
    assert "10 audio file(s) listed but missing" in out.errors
    assert str(root / "Audios" / "utt000.wav") in out.errors


@pytest.mark.parametrize(
    "case",
    [  # the checks that need the corpus read take seconds: slow
        pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.needs_data else [])
        for c in CONFIG_CASES
    ],
)
def test_bad_config_is_refused_before_training_naming_the_key(
    case: ConfigCase, demo_dirs, runs_dir, main_in_process, request
):
    demo = request.getfixturevalue("demo") if case.needs_data else demo_dirs
    run_dir = runs_dir / f"config-{case.id}"
    args = demo.overrides(runs_dir, run_dir.name, *case.overrides)
    dropped = [o for o in case.overrides if o.endswith("=")]
    args = [a for a in args if not any(a.startswith(d) for d in dropped)]
    out = main_in_process("train", args)
    assert out.code == 1
    assert case.key in out.errors and case.message in out.errors, out.errors
    # refused before any epoch; schema errors before the run folder even exists
    assert not (run_dir / "checkpoint_last.pt").exists()
    assert run_dir.exists() == case.needs_data
