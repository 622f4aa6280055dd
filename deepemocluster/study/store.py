"""The Optuna side of a study: its storage, sampler and pruner, and which trials count.

The storage is the only coordination between workers: trial numbers, grid cells and queued
retries are handed out by its database, so any number of workers on any number of machines can
run the same command. A trial records a heartbeat while it runs; one whose worker died stops
beating, and the next worker to look marks it failed and queues it once more (Optuna's heartbeat
and ``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from deepemocluster.errors import ConfigError
from deepemocluster.study.spec import Param, StudySpec

SPACE_ATTR = "space"  # the study's sampler and params, fixed when the study is created


def storage_url(spec: StudySpec, runs_dir: Path) -> str:
    """``study.storage``, or a sqlite file in the study's folder (created here)."""
    if spec.storage:
        return spec.storage
    folder = Path(runs_dir) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'study.db'}"


def open_study(
    spec: StudySpec, params: tuple[Param, ...], url: str, worker: int = 0, create: bool = False
) -> tuple[optuna.Study, bool]:
    """The study in ``url`` (created when ``create`` and missing) and whether this call created
    it. ``worker`` offsets the TPE seed so that parallel workers start from different points."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with quiet_experimental():
        try:
            storage = RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=spec.heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except ImportError as e:
            raise ConfigError(
                f"study.storage={safe_url(url)}: the database driver is not installed ({e}); "
                "PostgreSQL: pip install 'psycopg[binary]', MySQL: pip install pymysql"
            ) from e
    if spec.sampler == "grid":
        sampler = optuna.samplers.GridSampler({p.key: list(p.choices) for p in params}, spec.seed)
        pruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.seed + worker, constant_liar=True)
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=spec.pruner.startup_trials,
            n_warmup_steps=spec.pruner.warmup_epochs + 1,  # steps are epochs, counted from 1
        )
    space = {"sampler": spec.sampler, "params": spec.params}
    kwargs = {"study_name": spec.name, "storage": storage, "sampler": sampler, "pruner": pruner}
    created = False
    try:
        if create:
            study = optuna.create_study(direction="maximize", **kwargs)
            study.set_user_attr(SPACE_ATTR, space)
            created = True
        else:
            study = optuna.load_study(**kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
    except KeyError as e:  # load_study of a study that is not in the storage
        raise ConfigError(f"study {spec.name!r} not found in {safe_url(url)}") from e
    saved = study.user_attrs.get(SPACE_ATTR)
    if saved is not None and saved != space:
        raise ConfigError(
            f"study {spec.name!r} in {safe_url(url)} was created with another sampler or params "
            f"({saved}); give this one another study.name"
        )
    return study, created


def cell(trial: FrozenTrial) -> int:
    """A grid trial's cell: trial n < grid size takes cell n; a later one (a retry, or a
    cell left open by one) carries its cell id as a system attribute."""
    return trial.system_attrs.get("grid_id", trial.number)


def counted_trials(trials: list[FrozenTrial], grid: bool) -> list[FrozenTrial]:
    """The trials that stand in the results: without those a retry replaced and, in a grid,
    without a cell's second start (two workers raced for it; the lower trial number keeps it)."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    kept = [t for t in sorted(trials, key=lambda t: t.number) if t.number not in replaced]
    if not grid:
        return kept
    holders: dict[int, FrozenTrial] = {}
    for t in kept:
        holders.setdefault(cell(t), t)
    return sorted(holders.values(), key=lambda t: t.number)


def planned_trials(spec: StudySpec, params: tuple[Param, ...]) -> int:
    """The number of trials that complete the study: the grid's size, or ``trials``."""
    if spec.sampler == "grid":
        return math.prod(len(p.choices) for p in params)
    return spec.trials


def is_retry(trial: FrozenTrial) -> bool:
    return bool(trial.system_attrs.get("retry_history"))


def queue_retry(study: optuna.Study, number: int) -> None:
    """Queue trial ``number`` again (its worker was stopped by a signal or lost the tracking
    store: not the trial's fault, so such retries are not limited)."""
    trial = study.get_trials(deepcopy=False)[number]
    with quiet_experimental():
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)


def fail_dead_trials(study: optuna.Study) -> None:
    """Mark trials whose heartbeat stopped as failed and queue their one retry."""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def running(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.RUNNING]


@contextmanager
def quiet_experimental() -> Iterator[None]:
    """Heartbeats, stale trials, the retry callback and the matplotlib plots are marked
    experimental by Optuna: said once here, not in every log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def safe_url(url: str) -> str:
    """The storage URL without a password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "…@" + rest.split("@", 1)[1]
    return scheme + sep + rest
