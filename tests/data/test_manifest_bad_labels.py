"""Broken label files through the command line: exit code 1 and one message that names the file
and line, before any training. The command line runs in this process (``main(argv)``) to save an
interpreter start per case. (Bad configs: tests/test_config_bad_inputs.py.)"""

from __future__ import annotations

import csv

import pytest

from tests.support.reliability_cases import LABEL_CASES, LabelCase

pytestmark = pytest.mark.usefixtures("stray_signals_fail_the_test")

HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]


def _valid_rows() -> list[list[str]]:
    splits = ["Train"] * 6 + ["Development"] * 2 + ["Test1"] * 2
    return [
        [f"utt{i:03d}.wav", "NAHS"[i % 4], "3.5", "4.0", "4.5", f"spk{i % 3}", "Male", split]
        for i, split in enumerate(splits)
    ]


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
