"""A finished tiny training run: the analysis it logged, the analyze and predict commands, the
pyfunc model, and the report in a real browser."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib.image
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

from deepemocluster import analyze, predict
from deepemocluster.data.corpus import load_corpus
from deepemocluster.predict import Predictor, load_state

pytestmark = pytest.mark.slow

REPORT_HEADINGS = [
    "Summary",
    "Run settings",
    "Dependency tests",
    "Clusters",
    "Class mix per cluster",
    "Ratings per cluster",
    "Centroids on the valence–arousal plane",
    "Training curves",
    "Predicted vs true on Test1",
    "Full configuration",
]
FIGURES = {
    "class_heatmap.png",
    "ratings_per_cluster.png",
    "centroids_valence_arousal.png",
    "training_curves.png",
    "test_predicted_vs_true.png",
}
TABLES = {"clusters.csv", "contingency.csv", "tests.csv", "utterances.csv"}


def _analysis(trained_run, folder: str, tmp_path):
    client = MlflowClient(trained_run.uri)
    names = {a.path.split("/")[-1] for a in client.list_artifacts(trained_run.run_id, folder)}
    return names, Path(client.download_artifacts(trained_run.run_id, folder, str(tmp_path)))


def test_training_logs_analysis_tables_figures_and_metrics(trained_run, tmp_path, assert_png):
    names, folder = _analysis(trained_run, "analysis/Train-best", tmp_path)
    assert names == FIGURES | TABLES | {"summary.json", "report.html"}
    for figure in FIGURES:
        assert_png(folder / figure)
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["split"], summary["k"], summary["n_utterances"]) == ("Train", 4, 72)
    assert summary["n_labelled"] == 48  # the 24 unlabelled utterances have no ratings
    assert 0 <= summary["observed"]["class/cramers_v"] <= 1
    assert summary["shuffled_low"]["class/cramers_v"] <= summary["shuffled_high"]["class/cramers_v"]
    with (folder / "clusters.csv").open() as f:
        clusters = list(csv.DictReader(f))
    assert sum(int(r["utterances"]) for r in clusters) == 72 and len(clusters) == 4
    means = [float(r["arousal_mean"]) for r in clusters if int(r["labelled"])]
    assert means == sorted(means)  # ordered by mean arousal
    with (folder / "tests.csv").open() as f:
        tests = {r["statistic"]: r for r in csv.DictReader(f)}
    assert float(tests["class/cramers_v"]["observed"]) == pytest.approx(
        summary["observed"]["class/cramers_v"]
    )
    with (folder / "utterances.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 72
    run = MlflowClient(trained_run.uri).get_run(trained_run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["analysis/Train/class/cramers_v"] == pytest.approx(
        summary["observed"]["class/cramers_v"]
    )
    assert "analysis/Train/arousal/epsilon2_shuffled" in run.data.metrics


def test_report_renders_in_headless_chromium(trained_run, tmp_path, chromium):
    _, folder = _analysis(trained_run, "analysis/Train-best", tmp_path)
    url = (folder / "report.html").as_uri()
    dom = chromium(url, "--dump-dom").stdout
    assert re.findall(r"<h2>(.*?)</h2>", dom) == REPORT_HEADINGS
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', dom)) == len(FIGURES)
    shot = tmp_path / "report.png"
    chromium(url, f"--screenshot={shot}", "--window-size=1280,7000", "--hide-scrollbars")
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (7000, 1280)
    # text and tables are grey on white: strongly coloured pixels come from the rendered figures
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 0.3).sum() > 20_000


def test_analyze_cli_recomputes_another_split_and_reads_an_epoch(trained_run, tmp_path):
    uri = ["--tracking-uri", trained_run.uri]
    assert analyze.main([trained_run.run_id, "--split", "Development", *uri]) == 0
    names, folder = _analysis(trained_run, "analysis/Development-best", tmp_path)
    assert {"report.html", "summary.json"} <= names
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_utterances"] == summary["n_labelled"] == 16
    assert analyze.main([trained_run.run_id, "--epoch", "1", *uri]) == 0
    names, folder = _analysis(trained_run, "analysis/Train-epoch001", tmp_path)
    assert json.loads((folder / "summary.json").read_text())["epoch"] == 1
    metrics = MlflowClient(trained_run.uri).get_metric_history(
        trained_run.run_id, "analysis/Development/class/nmi"
    )
    assert [m.step for m in metrics] == [int(trained_run.test["best_epoch"])]
    # wrong requests: one clear message, exit 1
    assert analyze.main([trained_run.run_id, "--split", "Development", "--epoch", "1", *uri]) == 1
    assert analyze.main(["no-such-run", *uri]) == 1


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


def test_pyfunc_model_round_trip(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.uri)  # restored after the test
    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    wavs = sorted((trained_run.corpus_root / "Audios").glob("*.wav"))[:3]
    frame = pd.DataFrame({"path": [str(p) for p in wavs] + [str(tmp_path / "gone.wav")]})
    out = model.predict(frame)
    assert list(out.columns) == predict.output_columns(["arousal", "valence", "dominance"])
    assert out["path"].tolist() == frame["path"].tolist()
    assert out["error"].tolist() == ["", "", "", "not_a_file"]
    assert out["cluster"].isna().tolist() == [False, False, False, True]
    state = load_state(str(trained_run.run_dir / "checkpoint_best.pt"))
    direct = list(Predictor.from_checkpoint(state).predict(wavs))
    assert out["arousal"][:3].tolist() == pytest.approx([r["arousal"] for r in direct])
    assert out["cluster"][:3].tolist() == [r["cluster"] for r in direct]
