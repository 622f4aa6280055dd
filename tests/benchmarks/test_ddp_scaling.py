"""benchmarks/ddp_scaling.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import machine_ok, run_quick


@pytest.mark.slow
def test_ddp_scaling_benchmark_quick(tmp_path):
    stdout, result = run_quick("ddp_scaling.py", tmp_path / "ddp.json", "--cores", "2")
    assert "speed-up" in stdout
    assert result["benchmark"] == "ddp_scaling" and result["mode"] == "quick"
    machine_ok(result["machine"])
    one, two = result["settings"]
    assert (one["ranks"], one["threads_per_rank"]) == (1, 2)
    assert (two["ranks"], two["threads_per_rank"]) == (2, 1)
    for s in (one, two):
        assert len(s["epoch_s"]) == result["epochs"] == 2  # one logged epoch time per epoch
        assert all(t > 0 for t in s["epoch_s"]) and s["mean_epoch_s"] == s["epoch_s"][1]
        assert math.isfinite(s["test_ccc_mean"]) and s["wall_s"] > s["mean_epoch_s"]
    assert one["speedup_vs_1_rank"] == 1.0
    assert two["speedup_vs_1_rank"] == pytest.approx(one["mean_epoch_s"] / two["mean_epoch_s"])
