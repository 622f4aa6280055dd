"""The logged MLflow model, through MLflow's own command line: logged from code (no pickled
object), ``mlflow models predict`` and ``mlflow models serve`` give the rows of
``python -m deepemocluster.predict``, bad files are rows with an error, not failed requests, and
the ``segment`` parameter cuts long recordings as ``predict --segment`` does."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
import torch
import yaml

from deepemocluster.serving import predict, pyfunc
from deepemocluster.serving.api import Model
from deepemocluster.serving.backend import load_checkpoint
from deepemocluster.serving.timeline import output_columns
from deepemocluster.tracking import Tracker
from tests.support.loopback import free_port

pytestmark = pytest.mark.slow
AVD = ["arousal", "valence", "dominance"]
MLFLOW = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"


@pytest.fixture(scope="module")
def model_dir(trained_run, tmp_path_factory) -> Path:
    """The run's logged model, downloaded as MLflow stores it. A ``runs:/`` model URI is resolved
    through the process's current store, so that is the run's own for the download."""
    before, env_before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(trained_run.uri)  # (which mlflow also exports to the environment)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{trained_run.run_id}/model",
                dst_path=str(tmp_path_factory.mktemp("model")),
                tracking_uri=trained_run.uri,
            )
        )
    finally:
        mlflow.set_tracking_uri(before)
        if env_before is None:  # later runs in this process must find their default store
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before


@pytest.fixture(scope="module")
def inputs(trained_run, tmp_path_factory) -> list[str]:
    """Three real WAV files, a missing one and a corrupt one."""
    folder = tmp_path_factory.mktemp("inputs")
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt but nothing that decodes")
    return [*map(str, trained_run.wavs[:3]), str(folder / "missing.wav"), str(corrupt)]


@pytest.fixture(scope="module")
def cli_rows(trained_run, inputs, tmp_path_factory) -> list[dict]:
    """``python -m deepemocluster.predict`` on the inputs, as its CSV rows."""
    out = tmp_path_factory.mktemp("cli") / "preds.csv"
    cmd = [sys.executable, "-m", "deepemocluster.predict", "--model", trained_run.run_id]
    cmd += [*inputs, "--out", str(out), "--tracking-uri", trained_run.uri]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True, env=_env(trained_run))
    with out.open() as f:
        return list(csv.DictReader(f))


def _env(trained_run) -> dict[str, str]:
    """The tests' environment (this checkout first on the path) pointed at the run's store."""
    path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": trained_run.uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONPATH": path,
    }


def _assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """Rows of the model against the CLI's CSV (whose numbers are rounded to 4 decimals)."""
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    assert [r["segment"] for r in got] == [r["segment"] for r in expected]
    assert [r["error"] or "" for r in got] == [r["error"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        if e["error"]:
            assert all(g[a] is None for a in [*AVD, "cluster"])
            continue
        for col in [*AVD, "cluster_distance", "duration_s", "start_s", "end_s"]:
            assert g[col] == pytest.approx(float(e[col]), abs=6e-5), col
        assert g["cluster"] == int(e["cluster"])


def test_model_is_logged_from_code_with_pinned_requirements(model_dir):
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert Path(flavor["model_code_path"]).name == "pyfunc_model.py"
    assert (model_dir / "pyfunc_model.py").is_file()
    assert "python_model" not in flavor  # no cloudpickle file named in the flavor …
    assert not list(model_dir.rglob("*.pkl"))  # … nor anywhere in the model
    assert (model_dir / "code" / "deepemocluster" / "predict.py").is_file()
    assert flavor["artifacts"]["checkpoint"]["path"] == "artifacts/checkpoint_best.pt"
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements
    assert all("==" in r for r in requirements)
    outputs = [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])]
    assert outputs == ["path", "segment", "start_s", "end_s", "duration_s", *AVD] + [
        "cluster",
        "cluster_distance",
        "error",
    ]
    (param,) = json.loads(mlmodel["signature"]["params"])
    assert (param["name"], param["type"], param["default"]) == ("segment", "string", "auto")


def test_logging_the_model_warns_about_nothing(trained_run, tmp_path, caplog):
    tracker = Tracker(trained_run.uri, "pyfunc-warnings", tmp_path / "artifacts", 10.0)
    tracker.start("log-model")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        pyfunc.log_model(trained_run.checkpoint, AVD)
    tracker.end()
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "pickle" in m.lower() or "deserializ" in m.lower()]


def test_mlflow_models_predict_gives_the_cli_rows(trained_run, inputs, cli_rows, tmp_path):
    frame = tmp_path / "paths.csv"
    pd.DataFrame({"path": inputs}).to_csv(frame, index=False)
    out = tmp_path / "out.json"
    cmd = [MLFLOW, "models", "predict", "-m", f"runs:/{trained_run.run_id}/model"]
    cmd += ["--env-manager", "local", "-i", str(frame), "-t", "csv", "-o", str(out)]
    done = subprocess.run(cmd, timeout=180, capture_output=True, text=True, env=_env(trained_run))
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_rows(json.loads(out.read_text())["predictions"], cli_rows)
    assert [r["error"] for r in cli_rows[3:]] == ["not_a_file", "unreadable"]


def test_mlflow_models_serve_answers_a_real_post(trained_run, inputs, cli_rows, tmp_path):
    port = free_port()
    cmd = [MLFLOW, "models", "serve", "-m", f"runs:/{trained_run.run_id}/model"]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(trained_run), start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server, tmp_path / "serve.log", timeout_s=120)
        body = json.dumps({"dataframe_split": {"columns": ["path"], "data": [[p] for p in inputs]}})
        request = urllib.request.Request(
            f"{url}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            rows = json.loads(response.read())["predictions"]
        _assert_same_rows(rows, cli_rows)
        assert [r["error"] for r in rows[3:]] == ["not_a_file", "unreadable"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the CLI and the uvicorn server it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(
        f"mlflow models serve did not answer within {timeout_s} s: {log.read_text()[-3000:]}"
    )


def test_pyfunc_model_round_trip(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.uri)  # restored after the test
    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    wavs = sorted((trained_run.corpus_root / "Audios").glob("*.wav"))[:3]
    frame = pd.DataFrame({"path": [str(p) for p in wavs] + [str(tmp_path / "gone.wav")]})
    out = model.predict(frame)
    assert list(out.columns) == output_columns(["arousal", "valence", "dominance"])
    assert out["path"].tolist() == frame["path"].tolist()
    assert out["error"].tolist() == ["", "", "", "not_a_file"]
    assert out["cluster"].isna().tolist() == [False, False, False, True]
    state = load_checkpoint(str(trained_run.run_dir / "checkpoint_best.pt"))
    direct = list(Model.from_checkpoint(state).rows(wavs))
    assert out["arousal"][:3].tolist() == pytest.approx([r["arousal"] for r in direct])
    assert out["cluster"][:3].tolist() == [r["cluster"] for r in direct]


def _records(frame: pd.DataFrame) -> list[dict]:
    """A model's output as rows, missing numbers as None (as in a served JSON answer)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_segment_parameter_gives_the_cli_rows(trained_run, long_recordings, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_run.uri)  # restored after the test
    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    paths = [str(long_recordings.episode), str(trained_run.wavs[0]), str(long_recordings.music)]
    frame = pd.DataFrame({"path": paths})
    by_mode = {}
    for mode in ("auto", "never"):
        out = tmp_path / f"{mode}.csv"
        argv = ["--model", str(trained_run.checkpoint), *paths, "--segment", mode]
        assert predict.main([*argv, "--out", str(out)]) == 0
        with out.open() as f:
            expected = list(csv.DictReader(f))
        by_mode[mode] = _records(model.predict(frame, params={"segment": mode}))
        _assert_same_rows(by_mode[mode], expected)
    assert len(by_mode["auto"]) > len(by_mode["never"]) == 3  # segments, then the whole file
    assert by_mode["auto"][-1]["error"] == "no speech found"
    assert _records(model.predict(frame)) == by_mode["auto"]  # the default is auto
    with pytest.raises(Exception, match="segment must be one of auto, always, never"):
        model.predict(frame, params={"segment": "sometimes"})
