"""The predict command on a finished tiny training run: a folder of audio files in, one row per
file out, bad files reported."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from deepemocluster import predict
from deepemocluster.data.corpus import load_corpus
from deepemocluster.predict import Predictor, load_state

pytestmark = pytest.mark.slow


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
