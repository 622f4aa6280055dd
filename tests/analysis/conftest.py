"""Fixtures for the analysis tests: one tiny finished training run shared by the session (its
analysis, model and checkpoint are what the end-to-end tests inspect), and headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from tiny_config import TINY as TINY_BASE

from deepemocluster.config import load_config


@dataclass(frozen=True)
class TrainedRun:
    run_id: str
    uri: str
    run_dir: Path
    corpus_root: Path
    test: dict[str, float]


TINY = [*TINY_BASE, "tracking.run_name=tiny"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    from deepemocluster.training.run import run

    base = tmp_path_factory.mktemp("analysis_run")
    uri = f"sqlite:///{base / 'runs' / 'mlflow.db'}"
    cfg = load_config(
        overrides=[
            *TINY,
            f"data.root={base / 'demo'}",
            f"features.store={base / 'features'}",
            f"tracking.runs_dir={base / 'runs'}",
            f"tracking.uri={uri}",
        ]
    )
    test = run(cfg)
    run_dir = base / "runs" / "tiny"
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    return TrainedRun(run_id, uri, run_dir, base / "demo", test)


def _assert_png(path: Path) -> np.ndarray:
    """A decodable PNG with content (not one flat colour), small enough for docs and reports."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size < 300_000, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200, path
    assert image[..., :3].std() > 0.05, path
    return image


@pytest.fixture
def assert_png() -> Callable[[Path], np.ndarray]:
    return _assert_png


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """``chromium(url, *flags)`` → the finished headless browser process (stdout = text)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def browse(url: str, *flags: str) -> subprocess.CompletedProcess:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *flags,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)

    return browse
