"""One Optuna trial = one training run, a nested MLflow run of the study's parent run.

The trial's value is the best Development CCC (the model-selection criterion; Test1 is never
optimised); the final test metrics are kept as the trial's user attributes for the report. Each
epoch's Development CCC goes to Optuna, whose pruner may stop the run between epochs.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from deepemocluster.config import load_config, resolve_path
from deepemocluster.errors import DeepEmoClusterError, Interrupted, TrackingError
from deepemocluster.study.spec import Param, StudySpec, override
from deepemocluster.study.store import cell, counted_trials
from deepemocluster.tracking import resolve_uri, update_run
from deepemocluster.training.hooks import Hooks, StopRun

log = logging.getLogger("deepemocluster")
# Optuna user attributes linking a trial to its MLflow run, and the run back to the trial.
RUN_ID_ATTR = "mlflow_run_id"
ERROR_ATTR = "error"
DUPLICATE_ATTR = "duplicate_of"
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
STOPPED_ATTR = "stopped_by_signal"
STUDY_TAG, TRIAL_TAG = "study", "study.trial"


class TrialFailed(DeepEmoClusterError):
    """The trial's training raised; the trial is marked failed and the study goes on."""


@dataclass(frozen=True)
class Job:
    """What a worker needs to run trials (plain data: it crosses a process spawn)."""

    config_path: str | None
    overrides: tuple[str, ...]
    spec: StudySpec
    params: tuple[Param, ...]
    storage: str
    parent_run_id: str


def trial_run_name(study: str, number: int) -> str:
    """MLflow run name and run folder (``runs/<study>/t0003``) of trial ``number``."""
    return f"{study}/{_trial_folder(number)}"


class Objective:
    """``study.optimize`` calls this with each trial; ``current`` is the trial in flight, or
    the one a signal or the tracking store stopped."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.current: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial
        job = self.job
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        values = [override(p.key, p.suggest(trial)) for p in job.params]
        trials = trial.study.get_trials(deepcopy=False)
        if job.spec.sampler == "grid":
            _skip_duplicate(trial, trials)
        hooks = TrialHooks(trial, job.spec.name)
        try:
            test = self._train(trial, trials, values, hooks)
        except StopRun as e:
            raise optuna.TrialPruned(str(e)) from e
        except Exception as e:
            if (stop := _interruption(e)) is not None:  # the worker is stopping: not the trial
                trial.set_user_attr(STOPPED_ATTR, True)  # and its MLflow run ended KILLED
                if stop is e:
                    raise
                raise stop from e
            if isinstance(e, TrackingError):  # the store, not the setting: queued again
                raise
            # a NaN loss, a K the data cannot take, out of memory: this trial only
            message = str(e) if isinstance(e, DeepEmoClusterError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr(ERROR_ATTR, message[:500])
            raise TrialFailed(f"trial {trial.number}: {message}") from e
        for key, value in test.items():
            trial.set_user_attr(key, float(value))
        self.current = None
        return hooks.best

    def _train(
        self, trial: optuna.Trial, trials: list[FrozenTrial], values: list[str], hooks: TrialHooks
    ) -> dict[str, float]:
        # torch: imported only where trials run, after a spawned worker has set its threads
        from deepemocluster.training.run import run

        job = self.job
        run_name = trial_run_name(job.spec.name, trial.number)
        cfg = load_config(
            job.config_path, [*job.overrides, *values, f"tracking.run_name={run_name}"]
        )
        runs_dir = resolve_path(cfg.tracking.runs_dir)
        hooks.uri = resolve_uri(cfg.tracking.uri, runs_dir)
        _close_replaced_run(trials[trial.number], trials, hooks.uri, runs_dir / job.spec.name)
        return run(cfg, job.spec.name, parent_run_id=job.parent_run_id, hooks=[hooks])


class TrialHooks(Hooks):
    """Links the trial and its MLflow run both ways, reports each epoch's Development CCC to
    Optuna and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, study_name: str) -> None:
        self.trial, self.study_name = trial, study_name
        self.uri = ""  # the trial's tracking store, known once its config is loaded
        self.best = -math.inf

    def on_run_start(self, run_id: str, run_dir: Path) -> None:
        self.trial.set_user_attr(RUN_ID_ATTR, run_id)
        update_run(
            self.uri, run_id, tags={STUDY_TAG: self.study_name, TRIAL_TAG: str(self.trial.number)}
        )

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics["dev/ccc_mean"]
        self.best = max(self.best, value)
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise StopRun(f"optuna pruner: Development CCC {value:.4f} after epoch {epoch}")


def _skip_duplicate(trial: optuna.Trial, trials: list[FrozenTrial]) -> None:
    """Two workers that start a trial at the same moment can get the same grid cell: the later
    trial number gives way before any training."""
    mine = cell(trials[trial.number])
    holder = next(t for t in counted_trials(trials, grid=True) if cell(t) == mine)
    if holder.number != trial.number:
        trial.set_user_attr(DUPLICATE_ATTR, holder.number)
        raise optuna.TrialPruned(f"grid cell {mine} is trial {holder.number}'s")


def _close_replaced_run(
    trial: FrozenTrial, trials: list[FrozenTrial], uri: str, study_dir: Path
) -> None:
    """Point the MLflow run of the trial this one retries to the retry; a run whose worker died
    is still RUNNING: mark it FAILED (one stopped by a signal was closed as KILLED). The run id
    is on the trial, or (a worker killed before it got there) in the trial's run folder."""
    from deepemocluster.training.run_folder import RunFolder

    history = trial.system_attrs.get("retry_history", [])
    if not history:
        return
    previous = trials[history[-1]]
    run_id = previous.user_attrs.get(RUN_ID_ATTR)
    run_id = run_id or RunFolder(study_dir / _trial_folder(previous.number)).saved_run_id()
    if run_id:
        died = not previous.user_attrs.get(STOPPED_ATTR)
        tags = {"study.retried_as": str(trial.number)}
        update_run(uri, run_id, tags, status="FAILED" if died else None)
        log.info("trial %d retries trial %d (MLflow run %s)", trial.number, previous.number, run_id)


def _trial_folder(number: int) -> str:
    return f"t{number:04d}"


def _interruption(error: BaseException | None) -> Interrupted | None:
    """The Interrupted somewhere in ``error``'s chain (a signal that arrived while MLflow or
    another library was working is re-raised by it as its own error)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
