"""benchmarks/features.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import positive_finite, run_quick


@pytest.mark.slow
def test_features_benchmark_quick(tmp_path):
    stdout, result = run_quick("features.py", tmp_path / "features.json")
    assert "audio-s/s" in stdout

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
    assert positive_finite(result["corpus"]["audio_seconds"])

    for figure in (result["raw_mel"], result["decode_only"]):
        assert positive_finite(figure["seconds"])
        assert positive_finite(figure["audio_s_per_s"])
    assert set(result["end_to_end"]) == {"1", "2"}
    for figure in result["end_to_end"].values():
        for key in ("seconds", "audio_s_per_s", "ratio_to_raw"):
            assert positive_finite(figure[key]), key
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
