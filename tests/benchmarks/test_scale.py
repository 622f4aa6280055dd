"""benchmarks/scale.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick


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
