"""Fixtures for training tests: one tiny demo corpus and feature store shared by the session,
a fresh MLflow store per test, and a real `mlflow server` on 127.0.0.1 when a test asks for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loopback import free_port
from tiny_config import TINY

from deepemocluster.config import load_config


@pytest.fixture(scope="session")
def corpus_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpus")
    return {"root": base / "demo", "store": base / "features"}


@pytest.fixture
def tiny_overrides(corpus_dirs, tmp_path) -> list[str]:
    """A configuration that trains in seconds: small corpus, 32 mels, a 4-layer narrow encoder."""
    return [
        *TINY,
        f"data.root={corpus_dirs['root']}",
        f"features.store={corpus_dirs['store']}",
        f"tracking.runs_dir={tmp_path / 'runs'}",
        "tracking.run_name=tiny",
    ]


@pytest.fixture
def tiny_cfg(tiny_overrides):
    def make(*extra: str):
        return load_config(overrides=[*tiny_overrides, *extra])

    return make


def start_mlflow_server(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A real tracking server on loopback with its own sqlite store and artifact folder."""
    port = port or free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'server.db'}",
            "--artifacts-destination",
            str(workdir / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "server.log").open("w"),
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1):
                return proc, uri
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(
        f"mlflow server did not start: {(workdir / 'server.log').read_text()[-2000:]}"
    )


@pytest.fixture
def mlflow_server(tmp_path):
    workdir = tmp_path / "server"
    workdir.mkdir()
    proc, uri = start_mlflow_server(workdir)
    yield uri
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
