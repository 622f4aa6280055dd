"""benchmarks/onnx_inference.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick


@pytest.mark.slow
def test_onnx_inference_benchmark_quick(tmp_path):
    stdout, result = run_quick("onnx_inference.py", tmp_path / "onnx.json")
    assert "ratio" in stdout and result["benchmark"] == "onnx_inference"
    machine_ok(result["machine"])
    assert result["cpu_kind"]["torch_cpu_capability"] and result["baseline"] == "torch"
    assert result["settings"]["threads"] == 2
    assert result["max_abs_rating_difference"] < 1e-4 and result["same_chunk_clusters"]
    for task in ("network", "predict"):
        f = result[task]
        assert positive_finite(f["torch_chunks_per_s"])
        assert f["ratio_onnxruntime_over_torch"] == pytest.approx(
            f["onnxruntime_chunks_per_s"] / f["torch_chunks_per_s"]
        )
