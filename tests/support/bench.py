"""Running a benchmark script in quick mode, and the checks its JSON shares with the others."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(script: str, out: Path, *extra: str) -> tuple[str, dict]:
    """The script in quick mode, its numba cache (librosa's JIT) its own: the test workers run
    in parallel, and a process that died without a word (prosody.py, once) may have read
    another's half-written cache."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NUMBA_CACHE_DIR": str(out.parent / "numba_cache")},
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout, json.loads(out.read_text())


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` in this process (its ``_common`` import needs the folder
    on ``sys.path``), for tests of the functions it is the one home of."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def machine_ok(machine: dict) -> None:
    assert machine["cpu_count"] >= 1
    assert isinstance(machine["torch"], str) and machine["torch"]
    for key in ("loadavg_before", "loadavg_after"):
        assert len(machine[key]) == 3 and all(v >= 0 for v in machine[key])


def positive_finite(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
