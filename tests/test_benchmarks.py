"""The benchmarks run end to end (quick mode) and write well-formed results; timings are not judged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench_support import machine_ok, positive_finite, run_quick

from deepemocluster.config import ATTRIBUTES
from deepemocluster.hardware import Capabilities, choose_amp


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


@pytest.mark.slow
def test_train_throughput_benchmark_quick(tmp_path):
    stdout, result = run_quick("train_throughput.py", tmp_path / "train.json")
    assert "chunks/s" in stdout
    assert result["benchmark"] == "train_throughput" and result["mode"] == "quick"
    machine_ok(result["machine"])

    t = result["throughput"]
    assert set(t["rates"]) == {
        "train/default",
        "train/channels_last",
        "infer/default",
        "infer/channels_last",
    }
    for rate in t["rates"].values():
        assert positive_finite(rate["chunks_per_s"]) and rate["seconds"]
    assert set(t["channels_last_speedup"]) == {"train", "infer"}
    check = t["channels_last_check"]
    # the measured facts about memory formats, not timings: the model conversion reaches every
    # convolution; converting only the 1-channel input reaches none and changes no stride
    assert check["model_cl/input_as_is"] == {"convs_channels_last": 7, "convs": 7}
    assert check["model_default/input_cl"]["convs_channels_last"] == 0
    assert check["explicit_input_conversion_changes_strides"] is False

    flops = t["flops"]
    assert flops["train_flop_per_chunk"] > 2 * flops["forward_flop_per_chunk"]
    counter = flops["flop_counter"]
    for key in ("forward_flop_per_chunk", "train_flop_per_chunk"):
        # the analytic count leaves out BatchNorm/ReLU only: within 10 % of torch's own count
        assert abs(flops[key] / counter[key] - 1) < 0.1, key
    for peak in t["peak_flops"].values():
        assert positive_finite(peak["gflop_per_s"])
    for u in t["utilisation"].values():
        assert positive_finite(u["fraction_of_matmul"])

    assert set(result["epoch"]) == {"joint", "two_stage"}
    for e in result["epoch"].values():
        parts = e["parts_s"]
        assert set(parts) == {
            "data_loading",
            "embedding_forward",
            "kmeans",
            "training_steps",
            "dev_forward",
            "other",
        }
        assert all(math.isfinite(v) and v >= 0 for v in parts.values())
        assert math.isclose(sum(e["shares"].values()), 1.0, rel_tol=1e-6)
        assert e["batches_run"] == e["batches_full"] > 0 and not e["extrapolated"]
        # each stage embeds only the chunks it clusters: every chunk once per epoch in both modes
        assert e["embedded_per_training_chunk"] == 1
    for policy in ("default", "PASSIVE"):
        rates = result["wait_policy"][policy]
        assert set(rates) == {f"{k}_{n}_threads" for k in ("train", "infer") for n in (1, 2)}
        assert all(positive_finite(v) for v in rates.values())


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


@pytest.mark.slow
def test_scale_benchmark_quick(tmp_path):
    png = tmp_path / "scale.png"
    stdout, result = run_quick(
        "scale.py", tmp_path / "scale.json", "--plot", str(png), "--workdir", str(tmp_path)
    )
    assert "peak RSS MiB" in stdout
    assert result["benchmark"] == "scale" and result["mode"] == "quick"
    machine_ok(result["machine"])
    sizes = result["setup"]["sizes"]
    assert [r["utterances"] for r in result["sizes"]] == sizes and len(sizes) >= 2
    for row in result["sizes"]:
        assert row["training_chunks"] > 0 and positive_finite(row["store_gib"])
        assert positive_finite(row["epoch_s"]) and row["extrapolated"]
        assert row["batches_run"] == result["setup"]["training_steps_run"] < row["batches_full"]
        memory = row["memory_mib"]
        for key in ("peak_rss", "ru_maxrss", "peak_anon", "peak_file", "embedding_matrix"):
            assert positive_finite(memory[key]), key
        assert memory["peak_rss"] >= memory["peak_anon"]  # VmHWM counts the anonymous pages too
        assert row["threads"]["torch"] >= 1 and row["threads"]["faiss"] >= 1
    probes = result["sizes"][-1]["read_probe"]
    assert [p["method"] for p in probes] == ["mmap", "preadv"]
    assert probes[0]["chunks"] == probes[1]["chunks"] == result["sizes"][-1]["training_chunks"]
    # the library's preadv reads keep the store out of RSS; slicing the memory map maps it in
    store_mib = result["sizes"][-1]["store_gib"] * 1024
    assert probes[0]["peak_file_mib"] - probes[1]["peak_file_mib"] > store_mib / 4
    verdicts = result["verdicts"]
    for key in (
        "epoch_s_per_1k_utterances",
        "pooled_epoch_s_per_1k_utterances",
        "corpus_passes_s_per_1k_utterances",
    ):
        assert len(verdicts[key]) == len(sizes) and all(positive_finite(v) for v in verdicts[key])
    for key in (
        "rss_growth_below_20pct",
        "rss_growth_less_embeddings_below_20pct",
        "time_linear_within_20pct",
        "kmeans_share_at_most_10pct",
    ):
        assert isinstance(verdicts[key], bool)
    assert len(verdicts["kmeans_share_of_pooled_epoch"]) == len(sizes)
    assert all(0 < v < 1 for v in verdicts["kmeans_share_of_pooled_epoch"])
    # the growth "without the embeddings" is that of peak RSS minus the N x d matrix
    small, large = (result["sizes"][i]["memory_mib"] for i in (0, -1))
    less = (large["peak_rss"] - large["embedding_matrix"]) / (
        small["peak_rss"] - small["embedding_matrix"]
    )
    assert math.isclose(verdicts["peak_rss_growth_less_embeddings"], less - 1)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert not any(tmp_path.glob("bench-scale-*"))  # stores are deleted


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


@pytest.mark.slow
def test_quality_benchmark_quick(tmp_path):
    stdout, result = run_quick("quality.py", tmp_path / "quality.json")
    assert "Test1 CCC mean [95 % interval]" in stdout
    assert result["benchmark"] == "quality" and result["mode"] == "quick"
    machine_ok(result["machine"])
    methods = ("ridge", "no_clustering", "clustering")
    assert result["methods"] == list(methods)
    assert not any(o.startswith(("data.root", "tracking.")) for o in result["overrides"])
    runs = {(r["fraction"], r["seed"], r["method"]): r for r in result["runs"]}
    assert set(runs) == {(f, s, m) for f in (1.0, 0.1) for s in (0, 1) for m in methods}
    for r in runs.values():
        scores = r["ccc"]
        assert set(scores) == {"arousal", "valence", "dominance", "mean"}
        assert all(-1 <= v <= 1 for v in scores.values())
        assert scores["mean"] == pytest.approx(np.mean([scores[a] for a in ATTRIBUTES]))
    # with every Train label the ridge is the same whatever the seed; at 10 % the seed picks
    # which utterances keep their labels
    assert runs[1.0, 0, "ridge"]["ccc"] == runs[1.0, 1, "ridge"]["ccc"]
    assert runs[0.1, 0, "ridge"]["ccc"] != runs[0.1, 1, "ridge"]["ccc"]
    assert runs[1.0, 0, "ridge"]["ccc"]["arousal"] > 0.5  # pooled statistics carry arousal
    assert set(runs[1.0, 0, "ridge"]["alpha"].values()) <= set(result["ridge"]["alphas"])

    assert set(result["summary"]) == {"1.0", "0.1"}
    for fraction, summary in result["summary"].items():
        assert summary["seeds"] == [0, 1]
        f = float(fraction)
        for method, cells in summary["methods"].items():
            for key, cell in cells.items():
                values = [runs[f, s, method]["ccc"][key] for s in (0, 1)]
                assert cell["mean"] == pytest.approx(np.mean(values))
                low, high = cell["ci95"]
                assert low <= cell["mean"] <= high
                # t(0.975, 1 degree of freedom) = 12.706; for two seeds s/√2 is the ddof-0 std
                assert high - cell["mean"] == pytest.approx(12.706 * np.std(values), rel=1e-3)
        for pair, cells in summary["differences"].items():
            a, b = pair.split("-")
            for key, cell in cells.items():
                expected = [runs[f, s, a]["ccc"][key] - runs[f, s, b]["ccc"][key] for s in (0, 1)]
                assert cell["per_seed"] == pytest.approx(expected)
        assert summary["ratio_to_ridge"]["ridge"] == 1.0


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
