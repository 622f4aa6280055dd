"""Helpers of the reliability suite (imported by its tests and fixtures): the tiny config, a
restartable `mlflow server` on a fixed loopback port, and ways to run the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopback import free_port
from tiny_config import TINY as TINY_BASE
from train.conftest import start_mlflow_server

from deepemocluster import faults
from deepemocluster.config import load_config

# The shared tiny configuration on one torch thread (faster for a model this small, and the
# same arithmetic in every process).
TINY = [*TINY_BASE, "train.threads=1"]


@dataclass(frozen=True)
class Demo:
    root: Path
    store: Path

    def overrides(self, runs_dir: Path, run_name: str, *extra: str) -> list[str]:
        return [
            *TINY,
            f"data.root={self.root}",
            f"features.store={self.store}",
            f"tracking.runs_dir={runs_dir}",
            f"tracking.run_name={run_name}",
            f"tracking.uri=sqlite:///{runs_dir / 'mlflow.db'}",
            *extra,
        ]

    def config(self, runs_dir: Path, run_name: str, *extra: str):
        return load_config(overrides=self.overrides(runs_dir, run_name, *extra))


class MlflowServer:
    """A real `mlflow server` on a fixed loopback port with one store, stopped and restarted at
    will (the same URI and data across restarts)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def up(self) -> str:
        if self.proc is None:
            # No background job runner: halves the start-up time, and the tests need none.
            before = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
            os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
            try:
                self.proc, uri = start_mlflow_server(self.workdir, self.port)
            finally:
                if before is None:
                    os.environ.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
                else:
                    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = before
            assert uri == self.uri
        return self.uri

    def down(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# --- running the command line ---------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", faults.ENV)}
    return {**env, **extra}


def cli_command(module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", f"deepemocluster.{module}", *args]


def run_cli(module: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m deepemocluster.<module> ARGS`` in a child process, in folder ``cwd`` (one
    without configs/default.yaml: the config is the schema plus ARGS, as in ``load_config``)."""
    return subprocess.run(
        cli_command(module, args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(**env),
        timeout=600,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def is_stopped(pid: int) -> bool:
    """The process is stopped by SIGSTOP (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def run_id_of(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["run_id"]
