"""MLflow tracking: the only module that imports mlflow.

Training calls a handful of methods on ``Tracker``; the store (sqlite file by default, or a remote
``mlflow server``) is checked before any work starts so a wrong URI costs seconds, not an epoch.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deepemocluster.errors import TrackingError

# Fail within seconds on a dead server instead of retrying for minutes (set before mlflow import).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

_MAX_PARAM_LENGTH = 6000


def resolve_uri(configured: str, runs_dir: str | Path) -> str:
    """``tracking.uri`` if set, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<abs runs>/mlflow.db``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    runs = Path(runs_dir).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'mlflow.db'}"


def check_reachable(uri: str, timeout_s: float) -> None:
    """Raise TrackingError within ``timeout_s`` if an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            remaining = max(0.5, deadline - time.monotonic())
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=min(3.0, remaining)):
                return
        except (urllib.error.URLError, OSError) as e:
            last_error = e
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise TrackingError(f"MLflow tracking server {uri} is not reachable ({last_error})")


class Tracker:
    """One MLflow run: created fresh, or re-opened by id when training resumes."""

    def __init__(self, uri: str, experiment: str, artifacts_dir: Path, timeout_s: float) -> None:
        check_reachable(uri, timeout_s)
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        # mlflow also exports the URI to the environment, where it would silently win over the
        # default store of the next run started in this process: put the environment back.
        if env_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri
        self.uri = uri
        self.client = MlflowClient(uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                exp.experiment_id
                if exp
                else self.client.create_experiment(
                    experiment, artifact_location=_artifact_location(uri, artifacts_dir, experiment)
                )
            )
        except Exception as e:  # mlflow raises many types for an unusable store
            raise TrackingError(
                f"cannot open MLflow experiment {experiment!r} at {uri}: {e}"
            ) from e
        self.run_id: str | None = None

    def start(
        self, run_name: str, run_id: str | None = None, parent_run_id: str | None = None
    ) -> str:
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else None
        try:
            run = mlflow.start_run(
                run_id=run_id,
                experiment_id=None if run_id else self.experiment_id,
                run_name=None if run_id else run_name,
                tags=tags,
                nested=parent_run_id is not None,
            )
        except mlflow.exceptions.MlflowException as e:
            raise TrackingError(
                f"cannot open MLflow run {run_id or run_name!r} at {self.uri}: {e}"
            ) from e
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params not yet on the run (a resumed run keeps its original params)."""
        existing = self.client.get_run(self.run_id).data.params
        new = {k: str(v)[:_MAX_PARAM_LENGTH] for k, v in params.items() if k not in existing}
        if new:
            mlflow.log_params(new)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=subdir)

    def log_text(self, text: str, name: str) -> None:
        mlflow.log_text(text, name)

    def log_torch_model(
        self, model: Any, name: str, input_shape: tuple[int, ...], n_outputs: int
    ) -> None:
        """Pickle-format model with a signature whose batch dimension is dynamic (-1)."""
        import mlflow.pytorch
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_outputs))]),
        )
        mlflow.pytorch.log_model(
            model,
            name=name,
            signature=signature,
            serialization_format="pickle",
            pip_requirements=[],
        )

    def end(self, status: str = "FINISHED") -> None:
        mlflow.end_run(status=status)

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]


def download_checkpoint(uri: str, run_id: str, timeout_s: float = 10.0) -> Path:
    """Local copy of a run's best checkpoint (the ``checkpoints/`` artifact that training logs)."""
    check_reachable(uri, timeout_s)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="checkpoints/checkpoint_best.pt", tracking_uri=uri
            )
        )
    except Exception as e:  # unknown run id, missing artifact, store errors
        raise TrackingError(f"cannot fetch the checkpoint of run {run_id!r} from {uri}: {e}") from e


def _artifact_location(uri: str, artifacts_dir: Path, experiment: str) -> str | None:
    """Local stores keep artifacts under runs/artifacts; a server decides for itself."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (artifacts_dir / experiment).resolve().as_uri()
