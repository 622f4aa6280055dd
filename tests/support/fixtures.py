"""Fixtures shared across the test folders (registered in tests/conftest.py): tiny demo corpora
and configs that train in seconds, the reference result of an uninterrupted run, one finished run
to inspect, failpoints, the command line run in this process, the one `mlflow server`, and
headless Chromium.

Two fixtures guard a module only when it asks with ``pytest.mark.usefixtures``:
``stray_signals_fail_the_test`` and ``one_torch_thread``."""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from deepemocluster.config import load_config
from deepemocluster.data.demo import generate_demo_corpus
from deepemocluster.runtime import faults
from tests.support.episodes import write_episode, write_music_and_noise
from tests.support.mlflow_server import MlflowServer
from tests.support.tiny_config import TINY, TINY_MODEL


# --- tiny training runs on one demo corpus --------------------------------------------------------
@pytest.fixture(scope="session")
def corpus_dirs(tmp_path_factory) -> dict[str, Path]:
    """Where the session's tiny demo corpus and feature store live (made by the first run)."""
    base = tmp_path_factory.mktemp("corpus")
    return {"root": base / "demo", "store": base / "features"}


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store with every schema migration applied. A test's store in
    ``runs/mlflow.db`` starts as a copy of it: MLflow migrates a new file for seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("migrated_store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _fresh_runs_dir(runs: Path, store: Path) -> Path:
    """``runs`` with an empty, migrated ``mlflow.db`` (the default store of that runs folder)."""
    runs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store, runs / "mlflow.db")
    return runs


@pytest.fixture
def tiny_overrides(corpus_dirs, tmp_path, migrated_store) -> list[str]:
    """A configuration that trains in seconds: small corpus, 32 mels, a 4-layer narrow encoder."""
    runs = _fresh_runs_dir(tmp_path / "runs", migrated_store)
    return [
        *TINY,
        f"data.root={corpus_dirs['root']}",
        f"features.store={corpus_dirs['store']}",
        f"tracking.runs_dir={runs}",
        "tracking.run_name=tiny",
    ]


@pytest.fixture
def tiny_cfg(tiny_overrides):
    def make(*extra: str):
        return load_config(overrides=[*tiny_overrides, *extra])

    return make


# --- the reliability runs: one torch thread, a sqlite store per run folder ------------------------
# The shared tiny configuration on one torch thread (faster for a model this small, and the
# same arithmetic in every process).
TINY_ONE_THREAD = [*TINY, "train.threads=1"]


@dataclass(frozen=True)
class Demo:
    root: Path
    store: Path

    def overrides(self, runs_dir: Path, run_name: str, *extra: str) -> list[str]:
        return [
            *TINY_ONE_THREAD,
            f"data.root={self.root}",
            f"features.store={self.store}",
            f"tracking.runs_dir={runs_dir}",
            f"tracking.run_name={run_name}",
            f"tracking.uri=sqlite:///{runs_dir / 'mlflow.db'}",
            *extra,
        ]

    def config(self, runs_dir: Path, run_name: str, *extra: str):
        return load_config(overrides=self.overrides(runs_dir, run_name, *extra))


@pytest.fixture(scope="session")
def demo_dirs(tmp_path_factory) -> Demo:
    """Where the session's tiny demo corpus and feature store live (nothing generated yet)."""
    base = tmp_path_factory.mktemp("reliability")
    return Demo(base / "demo", base / "features")


@pytest.fixture(scope="session")
def demo(demo_dirs, tmp_path_factory) -> Demo:
    """The session's tiny demo corpus, generated."""
    runs = tmp_path_factory.mktemp("unused")
    generate_demo_corpus(demo_dirs.root, demo_dirs.config(runs, "x").data.demo)
    return demo_dirs


@pytest.fixture(scope="session")
def reference(demo, tmp_path_factory) -> dict[str, float]:
    """Final test metrics of an uninterrupted run of the tiny config (sqlite store)."""
    from deepemocluster.training.run import run

    runs = tmp_path_factory.mktemp("reference") / "runs"
    return run(demo.config(runs, "reference"))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder the tests of one module share (each names its own run)."""
    return tmp_path_factory.mktemp("runs") / "runs"


@pytest.fixture
def failpoint(monkeypatch) -> Callable[[str], None]:
    """``failpoint("cluster:2")`` arms DEEPEMOCLUSTER_FAILPOINT for the code run in this process
    (and the child processes it starts); ``failpoint("")`` disarms it."""

    def arm(spec: str) -> None:
        faults.reset()
        if spec:
            monkeypatch.setenv(faults.ENV, spec)
        else:
            monkeypatch.delenv(faults.ENV, raising=False)

    yield arm
    faults.reset()


@pytest.fixture
def stray_signals_fail_the_test():
    """A SIGTERM that no run handles would kill pytest: make it a test failure instead."""

    def fail(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached the test process")

    previous = signal.signal(signal.SIGTERM, fail)
    yield
    signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class InProcess:
    code: int
    errors: str  # the ERROR lines the entry point logged


@pytest.fixture
def main_in_process(caplog, monkeypatch, tmp_path) -> Callable[[str, list[str]], InProcess]:
    """``deepemocluster.<module>.main(ARGS)`` here: the entry point's exit code and its error
    lines, without the seconds a fresh interpreter spends on imports. It runs in an empty folder,
    so no configs/default.yaml sneaks in: the config is the schema plus ARGS."""
    monkeypatch.chdir(tmp_path)

    def call(module: str, args: list[str]) -> InProcess:
        caplog.clear()
        code = importlib.import_module(f"deepemocluster.{module}").main(args)
        errors = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        return InProcess(code, errors)

    return call


# --- the Siamese head and transfer: a source and a target demo corpus -----------------------------
@pytest.fixture
def one_torch_thread():
    """Tiny models train faster on one thread; put the process's setting back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def siamese_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny demo corpora made with different seeds (so different speakers) as source and
    target, and one feature store."""
    base = tmp_path_factory.mktemp("siamese")
    return {"source": base / "source", "target": base / "target", "store": base / "features"}


@pytest.fixture
def siamese_overrides(siamese_dirs, tmp_path, migrated_store) -> list[str]:
    """Target corpus as ``data``, source corpus as ``transfer.source``; 32 mels, 3 chunks, a
    4-block narrow encoder, the Siamese head."""
    runs = _fresh_runs_dir(tmp_path / "runs", migrated_store)
    return [
        "data.format=demo",
        f"data.root={siamese_dirs['target']}",
        "data.demo.seed=2",
        "data.demo.n_train=72",
        "data.demo.n_dev=8",
        "data.demo.n_test=48",
        "data.demo.n_unlabelled=0",
        "data.demo.n_speakers=12",
        "transfer.source.format=demo",
        f"transfer.source.root={siamese_dirs['source']}",
        "transfer.source.demo.seed=1",
        "transfer.source.demo.n_train=48",
        "transfer.source.demo.n_dev=8",
        "transfer.source.demo.n_test=8",
        "transfer.source.demo.n_unlabelled=0",
        "transfer.source.demo.n_speakers=8",
        f"features.store={siamese_dirs['store']}",
        *TINY_MODEL,
        "model.aux_head=siamese",
        "siamese.embed_dim=16",
        "train.threads=1",  # tiny steps: a second thread costs more than it gives on 2 busy cores
        "transfer.finetune_epochs=2",
        "transfer.finetune_lr=0.003",
        f"tracking.runs_dir={runs}",
        "tracking.run_name=tiny",
    ]


@pytest.fixture
def siamese_cfg(siamese_overrides):
    def make(*extra: str):
        return load_config(overrides=[*siamese_overrides, *extra])

    return make


# --- one finished run: its analysis, model and checkpoint -----------------------------------------
@dataclass(frozen=True)
class TrainedRun:
    run_id: str
    uri: str
    run_dir: Path
    corpus_root: Path
    test: dict[str, float]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint_best.pt"

    @property
    def wavs(self) -> list[Path]:
        return sorted((self.corpus_root / "Audios").glob("*.wav"))


def train_tiny(base: Path, *extra: str) -> TrainedRun:
    """A tiny run with its own demo corpus and sqlite store under ``base``."""
    from deepemocluster.training.run import run

    uri = f"sqlite:///{base / 'runs' / 'mlflow.db'}"
    cfg = load_config(
        overrides=[
            *TINY,
            "tracking.run_name=tiny",
            f"data.root={base / 'demo'}",
            f"features.store={base / 'features'}",
            f"tracking.runs_dir={base / 'runs'}",
            f"tracking.uri={uri}",
            *extra,
        ]
    )
    test = run(cfg)
    run_dir = base / "runs" / "tiny"
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    return TrainedRun(run_id, uri, run_dir, base / "demo", test)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One tiny finished training run shared by the session (its own corpus and sqlite store):
    analysis, prediction, serving and export tests only read it."""
    return train_tiny(tmp_path_factory.mktemp("analysis_run"), "tracking.report=true")


@pytest.fixture(scope="session")
def episode_run(tmp_path_factory) -> TrainedRun:
    """A tiny finished run whose unlabelled pool also holds one demo episode of about a minute,
    which the run cuts into segments."""
    base = tmp_path_factory.mktemp("episode_run")
    return train_tiny(
        base, "data.demo.n_episodes=1", "data.demo.episode_seconds=60", "tracking.report=true"
    )


@dataclass(frozen=True)
class LongRecordings:
    episode: Path  # a demo episode of about 75 s: several turns, longer than segment.max_s
    spans: list[tuple[int, float, float]]  # its (turn, start_s, end_s) speech
    music: Path  # 15 s of music and noise: no speech


@pytest.fixture(scope="session")
def long_recordings(tmp_path_factory) -> LongRecordings:
    """Long recordings to predict on, written to disk."""
    folder = tmp_path_factory.mktemp("long_recordings")
    episode = folder / "show" / "episode.wav"
    spans = write_episode(episode, 75.0)
    return LongRecordings(episode, spans, write_music_and_noise(folder / "jingle.wav", 15.0))


@pytest.fixture(scope="session")
def trained_onnx(trained_run, tmp_path_factory) -> Path:
    """The trained run's best checkpoint exported to ONNX."""
    from deepemocluster.serving.export import main as export_main

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export_main([str(trained_run.checkpoint), "--out", str(out)]) == 0
    return out


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


# --- services: the tracking server, a browser ----------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on 127.0.0.1, running, one per test module: ``.uri`` to talk to it,
    ``.down()`` / ``.up()`` to stop it and bring it back at the same URI with the same data."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    server.up()
    yield server
    server.down()


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
