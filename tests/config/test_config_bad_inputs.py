"""Bad configs through the command line: exit code 1 and one message that names the key, before
any training (and before the run folder exists unless the check needs the corpus read). The
command line runs in this process (``main(argv)``) to save an interpreter start per case."""

from __future__ import annotations

import pytest

from tests.support.reliability_cases import CONFIG_CASES, ConfigCase

pytestmark = pytest.mark.usefixtures("stray_signals_fail_the_test")


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
