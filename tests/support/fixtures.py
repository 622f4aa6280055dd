"""Fixtures of the reliability suite: one tiny demo corpus for the session, the reference result
of an uninterrupted run, failpoints, a module's `mlflow server`, and the command line run in this
process (fast) for exit codes and messages."""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from deepemocluster import faults
from deepemocluster.data.demo import generate_demo_corpus

from .support import Demo, MlflowServer


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


@pytest.fixture(autouse=True)
def stray_signals_fail_the_test():
    """A SIGTERM that no run handles would kill pytest: make it a test failure instead."""

    def fail(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached the test process")

    previous = signal.signal(signal.SIGTERM, fail)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    yield server
    server.down()


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
