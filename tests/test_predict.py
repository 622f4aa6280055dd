"""Prediction on the rating scale in every output path (torch, ONNX, the CLI with either
backend), and the ONNX backend through ``python -m deepemocluster.predict --backend onnx``."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepemocluster import predict
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.errors import CheckpointError
from deepemocluster.export import main as export_main
from deepemocluster.predict import Predictor, load_state

AVD = ["arousal", "valence", "dominance"]


@pytest.mark.slow
def test_rating_scale_from_the_checkpoint_or_the_manifests_scale(trained_run, tmp_path):
    assert Checkpoint.load(trained_run.checkpoint).rating_range == (1.0, 7.0)
    raw = torch.load(trained_run.checkpoint, weights_only=True)
    for saved, expected in ((None, (1.0, 7.0)), (torch.tensor([2.0, 5.0]), (2.0, 5.0))):
        if saved is None:  # written before the range was recorded
            raw.pop("rating_range")
        else:
            raw["rating_range"] = saved
        torch.save(raw, tmp_path / "c.pt")
        assert Checkpoint.load(tmp_path / "c.pt").rating_range == expected
    for bad in ([4.0, 4.0], [1.0, 7.0, 9.0]):
        raw["rating_range"] = torch.tensor(bad)
        torch.save(raw, tmp_path / "c.pt")
        with pytest.raises(CheckpointError, match=r"c\.pt: rating_range .* is not a \(low, high\)"):
            Checkpoint.load(tmp_path / "c.pt")


def _read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_every_output_path_clips_to_the_recorded_scale(trained_run, tmp_path):
    """A checkpoint whose labels were on a narrow scale: torch, ONNX and the CLI all keep every
    rating inside it, and values at the bounds are the clipped ones."""
    state = Checkpoint.load(trained_run.checkpoint)
    free = list(Predictor.from_checkpoint(state).predict(trained_run.wavs[:16]))
    values = sorted(r[a] for r in free for a in AVD)
    lo, hi = values[len(values) // 4], values[3 * len(values) // 4]  # a quarter out each side
    state = replace(state, rating_range=(lo, hi))
    narrow = tmp_path / "narrow.pt"
    state.save(narrow)
    onnx_file = tmp_path / "narrow.onnx"
    assert export_main([str(narrow), "--out", str(onnx_file)]) == 0

    for predictor in (Predictor.from_checkpoint(state), Predictor.from_onnx(onnx_file)):
        rows = list(predictor.predict(trained_run.wavs[:16]))
        for row, unclipped in zip(rows, free, strict=True):
            for a in AVD:
                assert row[a] == pytest.approx(min(max(unclipped[a], lo), hi), abs=1e-4)
        clipped = [r[a] for r in rows for a in AVD]
        assert min(clipped) == pytest.approx(lo) and max(clipped) == pytest.approx(hi)

    for backend, model in (("torch", narrow), ("onnx", onnx_file)):
        out = tmp_path / f"{backend}.csv"
        argv = ["--model", str(model), "--backend", backend, *map(str, trained_run.wavs[:16])]
        assert predict.main([*argv, "--out", str(out)]) == 0
        numbers = [float(r[a]) for r in _read(out) for a in AVD]
        assert lo - 1e-4 <= min(numbers) and max(numbers) <= hi + 1e-4


@pytest.mark.slow
def test_cli_onnx_backend_gives_the_torch_rows(trained_run, trained_onnx, tmp_path, caplog):
    folder = tmp_path / "audio"
    folder.mkdir()
    for wav in trained_run.wavs[:5]:
        (folder / wav.name).write_bytes(wav.read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    torch_csv, onnx_csv = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert (
        predict.main(["--model", str(trained_run.checkpoint), str(folder), "--out", str(torch_csv)])
        == 0
    )
    argv = ["--model", str(trained_onnx), "--backend", "onnx", str(folder), "--out", str(onnx_csv)]
    assert predict.main([*argv, "--batch-files", "2"]) == 0
    expected, got = _read(torch_csv), _read(onnx_csv)
    assert [r["path"] for r in got] == [r["path"] for r in expected] and len(got) == 6
    for g, e in zip(got, expected, strict=True):
        assert g["error"] == e["error"] and g["cluster"] == e["cluster"]
        for a in [*AVD, "cluster_distance", "duration_s"]:
            # the CSV holds 4 decimals: equal up to one rounding step
            assert g[a] == e[a] or abs(float(g[a]) - float(e[a])) <= 1.01e-4
    assert [r["error"] for r in got if r["error"]] == ["unreadable"]

    # a checkpoint given to the ONNX backend: one clear message, exit 1
    bad = ["--model", str(trained_run.checkpoint), "--backend", "onnx", str(folder)]
    assert predict.main([*bad, "--out", str(tmp_path / "x.csv")]) == 1
    assert "not a readable ONNX model" in caplog.text


def test_predict_folder_streams_rows_and_reports_bad_files(trained_run, tmp_path):
    state = load_state(str(trained_run.run_dir / "checkpoint_best.pt"))
    predictor = Predictor.from_checkpoint(state)
    corpus = load_corpus(predictor.cfg)
    rows = corpus.rows("Test1")[:3]
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    expected = {}
    for i, r in enumerate(rows):
        audio, sr = sf.read(corpus.manifest[r].path)
        target = folder / ("sub" if i else "") / f"file{i}.wav"
        if i == 2:  # another format and rate: FLAC, stereo, 8 kHz (half the samples)
            target = target.with_suffix(".flac")
            audio, sr = np.stack([audio[::2], audio[::2]], axis=1), sr // 2
        sf.write(target, audio, sr)
        expected[str(target)] = (r, len(audio) / sr)
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "notes.txt").write_text("not audio: ignored in folders")
    out = tmp_path / "preds.csv"
    argv = ["--model", trained_run.run_id, str(folder), "--out", str(out), "--batch-files", "2"]
    assert predict.main([*argv, "--tracking-uri", trained_run.uri]) == 0

    with out.open() as f:
        got = {row["path"]: row for row in csv.DictReader(f)}
    assert list(got) == sorted(got) and len(got) == 4  # every audio file, none of the others
    broken = got.pop(str(folder / "sub" / "broken.wav"))
    assert broken["error"] == "unreadable" and broken["arousal"] == broken["cluster"] == ""
    reference = predictor.dataset(corpus.packed, rows[:2])  # the two untouched WAV files
    ratings, (clusters, _) = predictor.ratings(reference), predictor.clusters(reference)
    for path, (row, seconds) in expected.items():
        out_row = got[path]
        assert out_row["error"] == ""
        assert float(out_row["duration_s"]) == pytest.approx(seconds, abs=0.02)
        assert 0 <= int(out_row["cluster"]) < 4 and float(out_row["cluster_distance"]) >= 0
        j = list(rows).index(row)
        if j < 2:  # same audio as in training: same numbers as the training data path
            got_avd = [float(out_row[a]) for a in ("arousal", "valence", "dominance")]
            assert got_avd == pytest.approx(ratings[j].tolist(), abs=1e-3)
            assert int(out_row["cluster"]) == clusters[j]

    assert (
        predict.main(["--model", str(tmp_path / "missing.pt"), str(folder), "--out", str(out)]) == 1
    )
