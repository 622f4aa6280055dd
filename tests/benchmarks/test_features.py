"""The benchmarks run end to end (quick mode) and write well-formed results; timings are not judged."""

from __future__ import annotations

import math

import pytest
from bench_support import machine_ok, positive_finite, run_quick


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
