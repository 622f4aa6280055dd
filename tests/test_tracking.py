"""Training against a real `mlflow server` on 127.0.0.1, the logged model round trip, and jobs
that open a new sqlite store together."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.serving.evaluate import evaluate
from deepemocluster.tracking import Tracker, resolve_uri
from deepemocluster.training.run import run

pytestmark = pytest.mark.slow


def test_run_against_mlflow_server_and_model_round_trip(tiny_cfg, mlflow_server):
    cfg = tiny_cfg(f"tracking.uri={mlflow_server.uri}", "tracking.experiment=server-test")
    test = run(cfg)
    client = MlflowClient(mlflow_server.uri)
    (r,) = client.search_runs([client.get_experiment_by_name("server-test").experiment_id])
    assert r.info.status == "FINISHED"
    assert r.data.params["model.channels"] == "[4, 8, 8, 16]"
    assert [m.step for m in client.get_metric_history(r.info.run_id, "dev/ccc_mean")] == [1, 2]
    assert r.data.metrics["test/ccc_mean"] == pytest.approx(test["test/ccc_mean"])
    names = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "checkpoints", "assignments"} <= names

    model = mlflow.pyfunc.load_model(f"runs:/{r.info.run_id}/model")
    wavs = sorted(Path(cfg.data.root, "Audios").glob("*.wav"))[:3]
    out = model.predict(pd.DataFrame({"path": [str(p) for p in wavs]}))
    assert out["error"].tolist() == ["", "", ""]
    ratings = out[["arousal", "valence", "dominance"]].to_numpy(dtype=float)
    # outputs are on the 1–7 rating scale (de-normalised), not z-scores
    assert np.isfinite(ratings).all() and 1.0 < ratings.mean() < 7.0

    # evaluate by run id: fetches the checkpoint from the server, same Test1 numbers
    report = evaluate(r.info.run_id, "Test1", tracking_uri=mlflow_server.uri)
    assert report["ccc_mean"] == pytest.approx(test["test/ccc_mean"], abs=1e-6)
    logged = client.get_run(r.info.run_id).data.metrics
    assert logged["eval/Test1/ccc_arousal"] == pytest.approx(report["ccc_arousal"])


def _open_when_released(uri: str, artifacts: str, release: float) -> str:
    time.sleep(max(0.0, release - time.time()))
    tracker = Tracker(uri, "together", Path(artifacts), 10.0)
    run_id = tracker.start("job")
    tracker.end("FINISHED")
    return run_id


def test_jobs_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    """Without the lock beside the store, all but one of the jobs that migrate a brand-new
    sqlite file at the same moment fail inside MLflow's migration."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    release = time.time() + 8  # after every process has imported mlflow
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=spawn) as pool:
        jobs = [
            pool.submit(_open_when_released, uri, str(tmp_path / "artifacts"), release)
            for _ in range(4)
        ]
        run_ids = [job.result(timeout=120) for job in jobs]
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("together").experiment_id]
    )
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert all(r.info.status == "FINISHED" for r in runs)


def test_default_store_is_absolute_sqlite_under_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = resolve_uri("", "runs")
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_uri("", "runs") == "http://127.0.0.1:5999"
    assert resolve_uri("sqlite:////x.db", "runs") == "sqlite:////x.db"
