"""benchmarks/clustering.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick


@pytest.mark.slow
def test_clustering_benchmark_quick(tmp_path):
    stdout, result = run_quick("clustering.py", tmp_path / "clustering.json")
    assert "sk/faiss" in stdout
    assert result["benchmark"] == "clustering" and result["mode"] == "quick"
    machine_ok(result["machine"])
    assert result["machine"]["faiss-cpu"] and result["machine"]["scikit-learn"]
    grid = result["grid"]
    assert len(result["cells"]) == len(grid["sizes"]) * len(grid["ks"])
    for cell in result["cells"]:
        assert cell["d"] == 256
        assert set(cell["best_s"]) == {"ours", "ours_1_thread", "faiss", "sklearn"}
        for key in ("sklearn_over_faiss", "sklearn_over_faiss_per_iteration", "sklearn_over_ours"):
            assert positive_finite(cell[key]), key
        for run in cell["runs"]["faiss"] + cell["runs"]["sklearn"]:
            assert 1 <= run["iterations"] <= result["iterations"]
        # same start, same algorithm: both libraries reach the same objective
        assert abs(cell["inertia_faiss_over_sklearn"] - 1) < 0.01
    probe = result["wait_policy"]
    for policy in ("default", "PASSIVE"):
        assert all(positive_finite(v) for v in probe[policy]["best_s"].values())
