"""benchmarks/train_throughput.py runs end to end (quick mode) and writes well-formed results;
timings are not judged."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick


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
