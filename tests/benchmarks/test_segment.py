"""benchmarks/segment.py runs end to end (quick mode) and writes well-formed results; timings are
not judged."""

from __future__ import annotations

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick


@pytest.mark.slow
def test_segment_benchmark_quick(tmp_path):
    stdout, result = run_quick("segment.py", tmp_path / "segment.json")
    assert "peak RSS" in stdout
    assert result["benchmark"] == "segment" and result["mode"] == "quick"
    machine_ok(result["machine"])
    assert isinstance(result["machine"]["silero-vad"], str)

    speed = result["throughput"]
    assert positive_finite(speed["audio_seconds"])
    assert positive_finite(speed["baseline_get_speech_timestamps_jit"]["x_realtime"])
    backends = ["jit", "onnx"] if result["machine"]["onnxruntime"] else ["jit"]
    for fmt in ("wav_16k_mono", "flac_44k_stereo"):
        for backend in backends:
            for workers in (1, 2):
                row = speed[f"{fmt}/{backend}/{workers}_workers"]
                for key in ("seconds", "x_realtime", "vs_baseline"):
                    assert positive_finite(row[key]), (fmt, backend, workers, key)

    memory = result["memory"]
    lengths = [memory[k] for k in ("1_min", "2_min")]
    for length, minutes in zip(lengths, (1, 2), strict=True):
        assert length["audio_seconds"] == pytest.approx(60 * minutes)
        assert length["segments"] > 0
        assert length["peak_rss_mib"] >= length["resting_rss_mib"] > 0
    assert positive_finite(memory["peak_ratio_longest_to_shortest"])
    target = result["target"]
    assert target["backend"] in backends
    assert set(target["met_x_realtime"]) == {"wav_16k_mono", "flac_44k_stereo"}
    assert isinstance(target["met_rss"], bool)
