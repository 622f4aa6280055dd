"""benchmarks/prosody.py runs end to end (quick mode) and writes well-formed results; timings are
not judged, the tracker's accuracy on the demo voice loosely is."""

from __future__ import annotations

import pytest

from tests.support.bench import machine_ok, positive_finite, run_quick

PASSES = {
    "mel",
    "prosody",
    "mel_decoded",
    "prosody_decoded",
    "lld_decoded",
    "librosa_yin",
    "librosa_pyin",
}


@pytest.mark.slow
def test_prosody_benchmark_quick(tmp_path):
    stdout, result = run_quick("prosody.py", tmp_path / "prosody.json")
    assert "thread RTF" in stdout
    assert result["benchmark"] == "prosody" and result["mode"] == "quick"
    machine_ok(result["machine"])
    assert result["settings"]["hop_length"] == 256 and result["settings"]["sample_rate"] == 16000

    assert set(result["speed"]) == PASSES
    for name, by_threads in result["speed"].items():
        assert set(by_threads) == {"1", "2"}, name
        for figure in by_threads.values():
            for key in ("seconds", "rtf", "ratio_to_mel"):
                assert positive_finite(figure[key]), (name, key)
            assert len(figure["all_seconds"]) == result["repetitions"]
    assert result["speed"]["mel"]["1"]["ratio_to_mel"] == 1.0

    accuracy = result["accuracy"]
    assert accuracy["utterances"] >= 2
    for name in ("prosody", "librosa_yin", "librosa_pyin"):
        e = accuracy[name]
        assert 0 <= e["gross_pitch_error"] < 0.1, name
        assert 0 <= e["fine_error_st"] < 1.0, name
        assert 0.8 < e["voicing_recall"] <= 1, name
        assert 0 <= e["voiced_in_pauses"] <= 1, name

    target = result["target"]
    assert target["threads"] == 2 and target["min_rtf"] == 50
    assert target["rtf"] == result["speed"]["prosody"]["2"]["rtf"]
    assert target["met"] is (target["rtf"] >= target["min_rtf"])
