"""MLflow tracking: the only module that imports mlflow.

Training calls a handful of methods on ``Tracker``; the store (sqlite file by default, or a remote
``mlflow server``) is checked before any work starts so a wrong URI costs seconds, not an epoch.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig

from deepemocluster.config import resolve_path
from deepemocluster.errors import TrackingError
from deepemocluster.runtime.faults import failpoint

# Fail within seconds on a dead server instead of retrying for minutes (set before mlflow import).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
# Batch logs get one line per event, not progress bars.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import mlflow.models  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import pandas as pd  # noqa: E402  (mlflow's own dependency; the pyfunc model's data type)
from mlflow.exceptions import MlflowException  # noqa: E402
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
        try:
            with _one_opener(uri):
                self.client = MlflowClient(uri)  # a new sqlite file is migrated here
                self.experiment_id = _experiment_id(
                    self.client, experiment, _artifact_location(uri, artifacts_dir, experiment)
                )
        except Exception as e:  # mlflow raises many types for an unusable store
            raise TrackingError(
                f"cannot open MLflow experiment {experiment!r} at {uri}: {e}"
            ) from e
        self.run_id: str | None = None

    @classmethod
    def open(cls, tracking: DictConfig, uri: str = "") -> Tracker:
        """The store a ``tracking`` config group names (``uri`` overrides ``tracking.uri``):
        the one way every command opens it."""
        runs_dir = resolve_path(tracking.runs_dir)
        return cls(
            resolve_uri(uri or tracking.uri, runs_dir),
            tracking.experiment,
            runs_dir / "artifacts",
            tracking.connect_timeout_s,
        )

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
        except Exception as e:  # MlflowException, or a connection error of a remote store
            raise TrackingError(
                f"cannot open MLflow run {run_id or run_name!r} at {self.uri}: {e}"
            ) from e
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params not yet on the run (a resumed run keeps its original params)."""
        with self._call("log params"):
            existing = self.client.get_run(self.run_id).data.params
            new = {k: str(v)[:_MAX_PARAM_LENGTH] for k, v in params.items() if k not in existing}
            if new:
                mlflow.log_params(new)

    def set_tags(self, tags: dict[str, str]) -> None:
        with self._call("set tags"):
            mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        failpoint("mlflow_log")
        with self._call("log metrics" if step is None else f"log the metrics of step {step}"):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        with self._call(f"log artifact {Path(path).name}"):
            mlflow.log_artifact(str(path), artifact_path=subdir)

    def log_text(self, text: str, name: str) -> None:
        with self._call(f"log {name}"):
            mlflow.log_text(text, name)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``status``; the run is no longer active here even when the store
        refuses the update (TrackingError)."""
        with self._call(f"mark the run {status}"):
            mlflow.end_run(status=status)

    def history(self, key: str) -> list[tuple[int, float]]:
        with self._call(f"read the history of {key}"):
            return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """mlflow raises many types for an unreachable or refusing store: one TrackingError."""
        try:
            yield
        except Exception as e:
            detail = str(e).strip().splitlines()
            raise TrackingError(
                f"MLflow store {self.uri}, run {self.run_id}: cannot {what} "
                f"({type(e).__name__}: {detail[0][:300] if detail else ''})"
            ) from e


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


@contextmanager
def _one_opener(uri: str) -> Iterator[None]:
    """For a local sqlite store, one process at a time opens it: jobs started together on a file
    that does not exist yet would each run MLflow's schema migration on it, and all but one fail
    (``alembic ... CommandError``). A lock file beside the store orders them; a server orders
    its clients itself."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with FileLock(uri.removeprefix("sqlite:///") + ".lock"):
        yield


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it when missing. Jobs started together against one server
    race to create it: the loser finds the winner's experiment instead of failing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as e:
        if (
            e.error_code != "RESOURCE_ALREADY_EXISTS"
            or (exp := client.get_experiment_by_name(name)) is None
        ):
            raise
        return exp.experiment_id


def _artifact_location(uri: str, artifacts_dir: Path, experiment: str) -> str | None:
    """Local stores keep artifacts under runs/artifacts; a server decides for itself."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (artifacts_dir / experiment).resolve().as_uri()


# --- reading a finished run, writing analysis back, the pyfunc model ----------------------------
@dataclass(frozen=True)
class RunRecord:
    """What analysis needs from a run besides its files: identity and every metric's history."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    history: dict[str, list[tuple[int, float]]]  # metric key → [(step, value)] in step order


def fetch_run(uri: str, run_id: str, timeout_s: float = 10.0) -> RunRecord:
    check_reachable(uri, timeout_s)
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
        history = {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in run.data.metrics
        }
    except Exception as e:  # unknown run id, store errors
        raise TrackingError(f"cannot read MLflow run {run_id!r} at {uri}: {e}") from e
    return RunRecord(run_id, run.info.run_name, run.info.status, dict(run.data.tags), history)


def download_artifact(uri: str, run_id: str, path: str, dst: Path, timeout_s: float = 10.0) -> Path:
    """Local copy of one artifact file or folder of a run, under ``dst``."""
    check_reachable(uri, timeout_s)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=uri, dst_path=str(dst)
            )
        )
    except Exception as e:  # unknown run id, missing artifact, store errors
        raise TrackingError(f"cannot fetch {path!r} of run {run_id!r} from {uri}: {e}") from e


def log_to_run(
    uri: str,
    run_id: str,
    folder: Path,
    artifact_path: str,
    metrics: dict[str, float],
    step: int = 0,
) -> None:
    """Add files and metrics to an existing run, finished or still active (client API, so it
    works from inside a training run as well as from a later command)."""
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    now = int(time.time() * 1000)
    try:
        client.log_artifacts(run_id, str(folder), artifact_path)
        client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )
    except Exception as e:
        raise TrackingError(f"cannot log analysis to run {run_id!r} at {uri}: {e}") from e


def update_run(uri: str, run_id: str, tags: dict[str, str], status: str | None = None) -> None:
    """Tag any run by id and, with ``status``, end it (client API, so the run need not be active
    in this process: a study links its trials' runs and closes those of dead workers)."""
    from mlflow.entities import RunTag

    client = MlflowClient(uri)
    try:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        if status is not None:
            client.set_terminated(run_id, status)
    except Exception as e:
        raise TrackingError(f"cannot update run {run_id!r} at {uri}: {e}") from e


PyfuncFactory = Callable[[dict[str, str]], Callable[[pd.DataFrame, dict], pd.DataFrame]]


class _PyfuncAdapter(mlflow.pyfunc.PythonModel):
    """MLflow's pyfunc interface around a plain factory, so that no other module imports mlflow:
    ``load(artifacts)`` returns the function that maps the input DataFrame and the request's
    params (the signature's defaults filled in by MLflow) to the output DataFrame."""

    def __init__(self, load: PyfuncFactory) -> None:
        self.load = load

    def load_context(self, context) -> None:
        self.predict_fn = self.load(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predict_fn(model_input, dict(params or {}))


def set_pyfunc_model(load: PyfuncFactory) -> None:
    """For a models-from-code file: the model MLflow logs or loads is ``load`` (see
    ``_PyfuncAdapter``)."""
    mlflow.models.set_model(_PyfuncAdapter(load))


def log_pyfunc_model(
    code: Path,
    artifacts: dict[str, Path],
    inputs: dict[str, str],
    outputs: dict[str, str],
    pip_requirements: list[str],
    code_paths: list[Path],
    name: str = "model",
    params: dict[str, str] | None = None,
) -> None:
    """Log a pyfunc model *from code* to the active run: ``code`` is a file that calls
    ``set_pyfunc_model`` (MLflow runs it now and at load time; nothing is pickled).
    ``inputs``/``outputs`` map column names to MLflow types for the signature, ``params`` the
    string parameters a request may set to their defaults; ``code_paths`` travel in the model's
    ``code/`` folder and are importable when it loads."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec(t, c) for c, t in inputs.items()]),
        outputs=Schema([ColSpec(t, c) for c, t in outputs.items()]),
        params=ParamSchema([ParamSpec(k, "string", v) for k, v in (params or {}).items()])
        if params
        else None,
    )
    with warnings.catch_warnings():  # the signature is given: an input example adds nothing
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        try:
            mlflow.pyfunc.log_model(
                name=name,
                python_model=str(code),
                artifacts={k: str(v) for k, v in artifacts.items()},
                signature=signature,
                pip_requirements=pip_requirements,
                code_paths=[str(p) for p in code_paths],
            )
        except Exception as e:  # store unreachable or refusing the upload
            raise TrackingError(f"cannot log the model {name!r}: {e}") from e
