"""benchmarks/amp_cpu_kinds.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import pytest

from deepemocluster.runtime.hardware import Capabilities, choose_amp
from tests.support.bench import machine_ok, positive_finite, run_quick


@pytest.mark.slow
def test_amp_cpu_kinds_benchmark_quick(tmp_path):
    stdout, result = run_quick("amp_cpu_kinds.py", tmp_path / "amp.json")
    assert result["benchmark"] == "amp_cpu_kinds" and "bf16/fp32" in stdout
    machine_ok(result["machine"])
    avx2 = result["kinds"]["avx2"]
    # the simulated AVX2-only CPU: torch dispatches AVX2 kernels and auto picks float32 there
    assert avx2["torch_cpu_capability"] == "AVX2" and avx2["auto_uses_bf16"] is False
    native = result["kinds"]["native"]
    facts = Capabilities(
        "cpu",
        cpu_capability=native["torch_cpu_capability"],
        avx512_bf16=native["avx512_bf16"],
        amx_bf16=native["amx_bf16"],
        onednn_max_isa=native["onednn_max_isa"],
    )
    assert native["auto_uses_bf16"] is choose_amp("auto", facts)[0]
    for kind in (native, avx2):
        for f in kind["figures"].values():
            assert positive_finite(f["fp32_chunks_per_s"]) and positive_finite(
                f["bf16_chunks_per_s"]
            )
            assert f["ratio_bf16_over_fp32"] == pytest.approx(
                f["bf16_chunks_per_s"] / f["fp32_chunks_per_s"]
            )
