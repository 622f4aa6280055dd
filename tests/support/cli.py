"""The command line in a child process (an environment without the caller's tracking URI or
failpoint, unless given), waiting for a child, and the run id a run folder records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deepemocluster.runtime import faults


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
