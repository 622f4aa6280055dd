"""The benchmarks run end to end (quick mode) and write well-formed results; timings are not judged."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _positive_finite(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@pytest.mark.slow
def test_features_benchmark_quick(tmp_path):
    out = tmp_path / "features.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "features.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audio-s/s" in proc.stdout

    result = json.loads(out.read_text())
    assert result["benchmark"] == "features"
    assert result["mode"] == "quick"
    for key in ("machine", "settings", "corpus", "raw_mel", "end_to_end", "pool_startup", "target"):
        assert key in result, key

    machine = result["machine"]
    assert machine["cpu_count"] >= 1
    for key in ("torch", "librosa", "numpy"):
        assert isinstance(machine[key], str) and machine[key]

    assert result["settings"] == {
        "kind": "log_mel",
        "sample_rate": 16000,
        "n_mels": 128,
        "n_fft": 512,
        "hop_length": 256,
        "fmin": 0.0,
        "fmax": None,
        "log_offset": 1e-6,
    }
    assert result["corpus"]["files"] >= 4
    assert _positive_finite(result["corpus"]["audio_seconds"])

    for figure in (result["raw_mel"], result["decode_only"]):
        assert _positive_finite(figure["seconds"])
        assert _positive_finite(figure["audio_s_per_s"])
    assert set(result["end_to_end"]) == {"1", "2"}
    for figure in result["end_to_end"].values():
        for key in ("seconds", "audio_s_per_s", "ratio_to_raw"):
            assert _positive_finite(figure[key]), key
        assert len(figure["all_seconds"]) == result["repetitions"]

    startup = result["pool_startup"]["seconds"]
    assert math.isfinite(startup) and startup >= 0
    stages = result["stage_profile_seconds"]
    assert set(stages) == {"key", "decode", "mel", "log", "write"}
    assert all(math.isfinite(v) and v >= 0 for v in stages.values())

    target = result["target"]
    assert target["workers"] == 2 and target["min_ratio"] == 0.7
    assert target["ratio"] == result["end_to_end"]["2"]["ratio_to_raw"]
    assert target["met"] is (target["ratio"] >= target["min_ratio"])
