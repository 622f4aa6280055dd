"""A finished tiny training run: the analysis it logged, the analyze command, and the report in a
real browser."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.analysis import analyze, outputs

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
RECORDING_HEADINGS = [
    "Clusters along each recording",
    "Time in each cluster per recording",
    "Dwell times",
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
    tmp_path.mkdir(exist_ok=True)
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
    assert "recordings" not in summary  # no long recordings in this run: no per-recording part
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


def test_a_later_analysis_repeats_what_training_logged(trained_run, tmp_path):
    """Training analyses Train from what it holds (its final clustering, its Test pass);
    ``analyze`` later reads the logged run: its checkpoint, its assignments, a model of its own.
    Summary, tables and figures agree to the bit, except the Test scatter: the later model runs in
    the default memory format, training's channels_last, and convolution kernels that differ
    round the predictions differently in the last bits (1e-7 on the 1–7 scale). The later
    analysis logs to the shared run again: the same files and numbers."""
    _, during = _analysis(trained_run, "analysis/Train-best", tmp_path / "during")
    summary = analyze.analyze(trained_run.run_id, tracking_uri=trained_run.uri)
    _, later = _analysis(trained_run, "analysis/Train-best", tmp_path / "later")
    assert json.loads((during / "summary.json").read_text()) == json.loads(
        json.dumps(outputs._jsonable(summary))
    )
    for name in {"summary.json"} | TABLES | FIGURES - {"test_predicted_vs_true.png"}:
        assert (later / name).read_bytes() == (during / name).read_bytes(), name
    scatter = [matplotlib.image.imread(f / "test_predicted_vs_true.png") for f in (during, later)]
    assert scatter[0].shape == scatter[1].shape
    assert np.abs(scatter[0] - scatter[1]).mean() < 1e-4


def test_segmented_recordings_get_a_per_recording_part(episode_run, tmp_path, assert_png):
    names, folder = _analysis(episode_run, "analysis/Train-best", tmp_path)
    recordings = {"recordings.csv", "dwell_times.csv", "recording_timelines.png", "dwell_times.png"}
    assert names == FIGURES | TABLES | recordings | {"summary.json", "report.html"}
    with (episode_run.run_dir / "segments.csv").open() as f:
        segments = list(csv.DictReader(f))
    summary = json.loads((folder / "summary.json").read_text())["recordings"]
    assert (summary["n_recordings"], summary["n_segments"]) == (1, len(segments)) and segments
    with (folder / "recordings.csv").open() as f:
        (row,) = csv.DictReader(f)
    seconds = sum(float(s["end_s"]) - float(s["start_s"]) for s in segments)
    assert float(row["segment_s"]) == pytest.approx(seconds, abs=0.01)
    per_cluster = [float(v) for k, v in row.items() if k.startswith("cluster_")]
    assert sum(per_cluster) == pytest.approx(seconds, abs=0.05)
    with (folder / "dwell_times.csv").open() as f:
        dwells = list(csv.DictReader(f))
    assert sum(int(d["segments"]) for d in dwells) == len(segments)
    assert len(dwells) == summary["n_dwells"] == int(row["switches"]) + 1
    # consecutive dwells of a recording are in different clusters, and follow each other in time
    assert all(a["cluster"] != b["cluster"] for a, b in zip(dwells, dwells[1:], strict=False))
    assert all(
        float(a["end_s"]) <= float(b["start_s"]) for a, b in zip(dwells, dwells[1:], strict=False)
    )
    mean = np.mean([float(d["seconds"]) for d in dwells])
    assert summary["dwell_mean_s"] == pytest.approx(mean, abs=1e-3)
    for figure in ("recording_timelines.png", "dwell_times.png"):
        assert_png(folder / figure)
    headings = re.findall(r"<h2>(.*?)</h2>", (folder / "report.html").read_text())
    assert headings == REPORT_HEADINGS[:-1] + RECORDING_HEADINGS + REPORT_HEADINGS[-1:]
    metrics = MlflowClient(episode_run.uri).get_run(episode_run.run_id).data.metrics
    assert metrics["analysis/Train/recordings/dwell_mean_s"] == pytest.approx(mean, abs=1e-3)


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
