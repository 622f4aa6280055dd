"""The one way the tests start a real `mlflow server`: on a fixed loopback port with its own
sqlite store and artifact folder, stopped and started again at will (same URI, same data)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.loopback import free_port


class MlflowServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def up(self) -> str:
        """Start the server unless it runs, wait until it answers; its URI."""
        if self.proc is None:
            self.proc = self._start()
        return self.uri

    def down(self) -> None:
        """Stop the server and the uvicorn process it started (its own process group), so no
        server outlives its test."""
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None

    def _start(self) -> subprocess.Popen:
        mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        log = self.workdir / "server.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [
                    mlflow_bin,
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.workdir / 'server.db'}",
                    "--artifacts-destination",
                    str(self.workdir / "server-artifacts"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                # No background job runner: halves the start-up time, and the tests need none.
                env={
                    **os.environ,
                    "MLFLOW_TRACKING_URI": "",
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                },
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1):
                    return proc
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.3)
        _stop_group(proc)
        raise RuntimeError(f"mlflow server did not start: {log.read_text()[-2000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
