"""docs/reliability.md shows the matrices of cases.py: every case has its row, saying what the
tests assert; every failpoint in the package is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.reliability_cases import (
    AUDIO_CASES,
    CONFIG_CASES,
    LABEL_CASES,
    LABEL_TOLERANCES,
    USED,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "reliability.md").read_text()


def _row(case_id: str) -> list[str]:
    """The cells of the table row whose first cell names ``(`case_id`)``."""
    rows = [ln for ln in DOC.splitlines() if ln.startswith("|") and f"(`{case_id}`)" in ln]
    assert len(rows) == 1, f"docs/reliability.md: {len(rows)} rows for case {case_id!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def _says(cell: str, expected: str | None) -> bool:
    if expected is None:
        return cell.startswith("not listed")
    if expected == USED:
        return cell.startswith("used")
    return cell == f"skipped: `{expected}`"


@pytest.mark.parametrize("case", AUDIO_CASES, ids=[c.id for c in AUDIO_CASES])
def test_audio_row(case):
    _, labelled, unlabelled = _row(case.id)
    assert _says(labelled, case.labelled), labelled
    assert _says(unlabelled, case.unlabelled), unlabelled


@pytest.mark.parametrize("case", LABEL_CASES, ids=[c.id for c in LABEL_CASES])
def test_label_row(case):
    _, behaviour = _row(case.id)
    assert behaviour.startswith("exit 1")
    assert f":{case.line}: " in behaviour and case.message in behaviour, behaviour


@pytest.mark.parametrize("tolerance", LABEL_TOLERANCES)
def test_label_tolerance_row(tolerance):
    _, behaviour = _row(tolerance)
    assert behaviour.startswith("accepted")


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_config_row(case):
    _, behaviour = _row(case.id)
    assert behaviour.startswith("exit 1")
    assert case.key in behaviour
    assert ("after reading the corpus" in behaviour) == case.needs_data


def test_every_failpoint_is_documented():
    names = set()
    for path in (ROOT / "deepemocluster").rglob("*.py"):
        # failpoint("name"), failpoint(point or f"write_{path.stem}"), write_atomic(..., point="name")
        names |= set(
            re.findall(r'(?:failpoint\((?:\w+ or )?|point=)f?"([a-z_{}.]+)"', path.read_text())
        )
    names = {n.replace("{path.stem}", "checkpoint_last") for n in names} | {
        n.replace("{path.stem}", "checkpoint_best") for n in names
    }
    assert names >= {"feature_write", "cluster", "train_step", "mlflow_log"}
    for name in names:
        assert f"`{name}`" in DOC, name
