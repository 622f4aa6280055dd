"""benchmarks/paper_epoch.py runs end to end (quick mode) and writes well-formed results for every
variant and for the whole run (``--whole-run``); timings are not judged."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick

PRECISIONS = ("fp32", "bf16")
# variant: (amp, micro-batch chunks, embedding batch chunks)
VARIANTS = {"paper": (True, 32, 64), "unsplit": (True, 0, 512), "fp32": (False, 32, 32)}
PARTS = {"data_loading", "embedding_forward", "kmeans", "training_steps", "dev_forward", "other"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("paper_epoch") / "paper_epoch.json"
    return run_quick("paper_epoch.py", out, "--whole-run")


@pytest.mark.slow
def test_header_machine_and_corpus(quick_run):
    stdout, result = quick_run
    assert "speed-up vs scaled reference" in stdout and "reference probe" in stdout
    assert result["benchmark"] == "paper_epoch" and result["mode"] == "quick"
    assert result["config"] == "configs/paper.yaml"
    machine_ok(result["machine"])
    assert result["reference"]["epoch_s"] == pytest.approx(1244.5)
    assert result["cpu_kind"]["name"] == "native"
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
        assert positive_finite(peak["gflop_per_s"]) and peak["seconds"]


@pytest.mark.slow
def test_the_reference_is_scaled_to_this_cpu_by_the_probe(quick_run):
    _, result = quick_run
    probe, reference = result["reference_probe"], result["reference"]
    rates = probe["chunks_per_s"]
    assert set(rates) == {"default", "channels_last"} and all(map(positive_finite, rates.values()))
    scaled = reference["epoch_s"] * reference["probe_chunks_per_s"] / rates["default"]
    assert probe["reference_epoch_s"] == pytest.approx(scaled)
    for s in result["summary"].values():
        assert s["speedup_vs_reference"] == pytest.approx(scaled / s["epoch_s"])
        assert s["speedup_vs_reference_unscaled"] == pytest.approx(
            reference["epoch_s"] / s["epoch_s"]
        )


@pytest.mark.slow
def test_a_subset_of_variants_as_an_avx2_only_cpu(tmp_path):
    _, result = run_quick(
        "paper_epoch.py", tmp_path / "avx2.json", "--cpu-kind", "avx2", "--variants", "paper"
    )
    kind = result["cpu_kind"]
    # the whole run (probe, epochs) as an AVX2-only CPU: auto resolves to float32 there
    assert kind["name"] == "avx2" and kind["torch_cpu_capability"] == "AVX2"
    assert kind["auto_uses_bf16"] is False
    assert set(result["epochs"]) == set(result["summary"]) == {"paper"}
    assert result["epochs"]["paper"]["amp"] is False
    assert "speedup_vs_unsplit" not in result["summary"]["paper"]  # its baseline did not run
    assert "whole_run" not in result  # only with --whole-run


@pytest.mark.slow
def test_one_full_epoch_per_variant(quick_run):
    _, result = quick_run
    assert set(result["epochs"]) == set(VARIANTS) == set(result["summary"])
    for name, settings in VARIANTS.items():
        epoch = result["epochs"][name]
        assert epoch["variant"] == name
        assert (epoch["amp"], epoch["micro_batch_chunks"], epoch["eval_batch_chunks"]) == settings
        assert epoch["batch_chunks"] > epoch["micro_batch_chunks"]  # the quick run splits too
        profile = epoch["profile"]
        assert not profile["extrapolated"] and profile["batches_run"] == profile["batches_full"] > 0
        # every training chunk is trained on and embedded once (two_stage: each stage its own)
        assert profile["chunks_read"]["train"] == epoch["training_chunks"]
        assert profile["chunks_read"]["embed"] == epoch["training_chunks"]
        assert epoch["labelled_chunks"] + epoch["unlabelled_chunks"] == epoch["training_chunks"]
        memory = epoch["memory_mib"]
        for key in ("peak_rss", "peak_anon", "peak_file", "rss_before_epoch", "ru_maxrss"):
            assert positive_finite(memory[key]), key
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
            "speedup_vs_unsplit",
            "peak_rss_gib",
            "train_chunks_per_s",
            "embed_chunks_per_s",
            "train_gflop_per_s",
            "train_fraction_of_matmul",
            "train_fraction_of_matmul_with_recompute",
            "epoch_gflop_per_s",
        ):
            assert positive_finite(s[key]), (name, key)
    summary = result["summary"]
    assert summary["unsplit"]["speedup_vs_unsplit"] == 1.0
    # the recompute is counted for split steps with a CCC only: the labelled stage's
    paper, unsplit = summary["paper"], summary["unsplit"]
    epoch = result["epochs"]["paper"]
    labelled_share = epoch["labelled_chunks"] / epoch["training_chunks"]
    assert 0 < labelled_share < 1
    assert paper["train_fraction_of_matmul_with_recompute"] == pytest.approx(
        paper["train_fraction_of_matmul"] * (1 + labelled_share / 3)
    )
    assert unsplit["train_fraction_of_matmul_with_recompute"] == unsplit["train_fraction_of_matmul"]
    probe = result["variant_probe"]
    assert set(probe["chunks_per_s"]) == {f"{k}/{v}" for k in ("train", "infer") for v in VARIANTS}
    assert all(positive_finite(v) for v in probe["chunks_per_s"].values())
    ratios = probe["over_unsplit"]
    assert ratios["unsplit"] == {"train": 1.0, "infer": 1.0}
    assert all(positive_finite(r) for v in ratios.values() for r in v.values())
    for verdict in result["verdicts"].values():
        assert set(verdict) == set(VARIANTS)
        assert all(isinstance(v, bool) for v in verdict.values())


@pytest.mark.slow
def test_the_whole_run_times_its_final_stage_against_its_epoch(quick_run):
    stdout, result = quick_run
    assert "final stage" in stdout
    run = result["whole_run"]
    assert run["epochs"] == 1 and run["threads"] == 2
    for key in ("prepare_s", "setup_s", "epoch_s", "final_stage_s", "total_s"):
        assert positive_finite(run[key]), key
    # set-up, the epoch and the final stage follow one another inside the run's wall time
    assert run["setup_s"] + run["epoch_s"] + run["final_stage_s"] <= run["total_s"]
    assert run["final_stage_over_epoch"] == pytest.approx(run["final_stage_s"] / run["epoch_s"])
    # the final stage ran the analysis report (tracking.report=true), so it is in the time
    assert any(a.startswith("analysis/") for a in run["report_artifacts"])
    assert -1 <= run["test_ccc_mean"] <= 1
    memory = run["memory_mib"]
    for key in ("peak_rss", "peak_anon", "peak_file", "peak_rss_at_last_epoch_end"):
        assert positive_finite(memory[key]), key
    # the whole process's peak covers the epoch's and its own anonymous peak; torch alone is
    # over 100 MiB, and no process here can exceed the machine
    assert memory["peak_rss"] >= max(memory["peak_rss_at_last_epoch_end"], memory["peak_anon"])
    assert 100 < memory["peak_rss"] < result["machine"]["memory_gib"] * 1024
    assert run["peak_rss_gib"] == pytest.approx(memory["peak_rss"] / 1024)
    targets, verdicts = run["targets"], run["verdicts"]
    assert targets == {"final_stage_over_epoch": 0.3, "peak_rss_gib": 1.0}
    ratio_ok = run["final_stage_over_epoch"] <= targets["final_stage_over_epoch"]
    assert verdicts["final_stage_at_most_0.3_of_epoch"] is ratio_ok
    assert verdicts["peak_rss_at_most_1_gib"] is (run["peak_rss_gib"] <= targets["peak_rss_gib"])
