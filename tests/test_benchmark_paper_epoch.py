"""benchmarks/paper_epoch.py runs end to end (quick mode) and writes well-formed results for both
precisions; timings are not judged."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "paper_epoch.py"
PRECISIONS = {"fp32": False, "bf16": True}
PARTS = {"data_loading", "embedding_forward", "kmeans", "training_steps", "dev_forward", "other"}


def _positive(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("paper_epoch") / "paper_epoch.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_header_machine_and_corpus(quick_run):
    stdout, result = quick_run
    assert "speed-up vs reference" in stdout
    assert result["benchmark"] == "paper_epoch" and result["mode"] == "quick"
    assert result["config"] == "configs/paper.yaml"
    machine = result["machine"]
    assert isinstance(machine["torch"], str) and machine["cpu_count"] >= 1
    for key in ("loadavg_before", "loadavg_after"):
        assert len(machine[key]) == 3 and all(v >= 0 for v in machine[key])
    assert result["reference"]["epoch_s"] == pytest.approx(20.7 * 60)
    splits = result["corpus"]["splits"]
    assert set(splits) == {"Train", "Unlabelled", "Development", "Test1"}
    assert sum(splits.values()) == result["setup"]["utterances"]
    assert all(n >= 2 for n in splits.values())


@pytest.mark.slow
def test_flops_and_peaks(quick_run):
    _, result = quick_run
    flops = result["flops"]
    assert flops["train_flop_per_chunk_3x"] == 3 * flops["forward_flop_per_chunk"]
    # the analytic count leaves out BatchNorm/ReLU only: within 10 % of torch's own count
    counted = flops["flop_counter"]["forward_flop_per_chunk"]
    assert abs(flops["forward_flop_per_chunk"] / counted - 1) < 0.1
    assert set(result["peak_flops"]) == {
        f"{p}/{k}" for p in PRECISIONS for k in ("matmul", "conv3x3")
    }
    for peak in result["peak_flops"].values():
        assert _positive(peak["gflop_per_s"]) and peak["seconds"]


@pytest.mark.slow
def test_one_full_epoch_per_precision(quick_run):
    _, result = quick_run
    assert set(result["epochs"]) == set(PRECISIONS) == set(result["summary"])
    for name, amp in PRECISIONS.items():
        epoch = result["epochs"][name]
        assert epoch["amp"] is amp
        profile = epoch["profile"]
        assert not profile["extrapolated"] and profile["batches_run"] == profile["batches_full"] > 0
        # every training chunk is trained on and embedded once (two_stage: each stage its own)
        assert profile["chunks_read"]["train"] == epoch["training_chunks"]
        assert profile["chunks_read"]["embed"] == epoch["training_chunks"]
        assert epoch["labelled_chunks"] + epoch["unlabelled_chunks"] == epoch["training_chunks"]
        memory = epoch["memory_mib"]
        for key in ("peak_rss", "peak_anon", "peak_file", "rss_before_epoch", "ru_maxrss"):
            assert _positive(memory[key]), key
        assert memory["peak_rss"] >= max(memory["peak_anon"], memory["rss_before_epoch"])


@pytest.mark.slow
def test_summary_and_verdicts(quick_run):
    _, result = quick_run
    for name, s in result["summary"].items():
        assert set(s["parts_s"]) == PARTS == set(s["shares"])
        assert math.isclose(sum(s["shares"].values()), 1.0, rel_tol=1e-6)
        assert s["epoch_s"] == pytest.approx(result["epochs"][name]["profile"]["epoch_s"])
        for key in (
            "epoch_s",
            "speedup_vs_reference",
            "speedup_vs_reference_per_training_chunk",
            "speedup_vs_fp32",
            "peak_rss_gib",
            "train_chunks_per_s",
            "embed_chunks_per_s",
            "train_gflop_per_s",
            "train_fraction_of_matmul",
            "epoch_gflop_per_s",
        ):
            assert _positive(s[key]), (name, key)
    assert result["summary"]["fp32"]["speedup_vs_fp32"] == 1.0
    probe = result["precision_probe"]
    assert set(probe["chunks_per_s"]) == {
        f"{k}/{p}" for k in ("train", "infer") for p in PRECISIONS
    }
    assert all(_positive(v) for v in probe["chunks_per_s"].values())
    assert all(_positive(v) for v in probe["bf16_over_fp32"].values())
    for verdict in result["verdicts"].values():
        assert set(verdict) == set(PRECISIONS)
        assert all(isinstance(v, bool) for v in verdict.values())
