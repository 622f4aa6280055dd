"""The study file: which training options a study varies, and how; loaded strictly.

A study file is YAML merged over ``StudySpec``; ``study.<key>=value`` on the command line overrides
it. Unknown keys fail naming the key. Every parameter must be an option of the training schema
(``deepemocluster/config/schema.py``) and every value it can take must pass that schema's checks, so a
typo costs nothing rather than a trial.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepemocluster.config import flatten, load_config
from deepemocluster.config.schema import Config
from deepemocluster.errors import ConfigError

SAMPLERS = ("grid", "tpe")
# Set by the study for every trial (run names, store, resume), never a parameter.
_STUDY_OWNED = ("tracking.", "train.resume")
_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass
class PrunerSpec:
    """Search studies stop a trial whose Development CCC after an epoch is below the median of
    the earlier trials' at that epoch (Optuna's MedianPruner)."""

    startup_trials: int = 5  # trials that run to the end before any trial can be pruned
    warmup_epochs: int = 5  # epochs every trial runs before it can be pruned


@dataclass
class StudySpec:
    name: str = ""  # default: the study file's name; also the folder runs/<name>/
    sampler: str = "grid"  # grid: every combination once | tpe: a search of `trials` trials
    trials: int = 0  # tpe only: trials over all workers together (raise it to extend a search)
    seed: int = 0  # the sampler's seed
    # Optuna storage; "" = sqlite:///<tracking.runs_dir>/<name>/study.db. A postgresql:// or
    # mysql:// URL lets workers on many machines share the study.
    storage: str = ""
    # A running trial records a heartbeat this often; one silent for twice as long is dead
    # (its worker was killed) and is retried once.
    heartbeat_s: int = 60
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    # option → list of values (grid; a categorical choice in tpe), or for tpe
    # {low, high, log, step}: an int range when low and high are ints, else a float range
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """One training option the study varies: a list of values, or a numeric range (tpe)."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        """This trial's value (``trial`` is an ``optuna.Trial``)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    @property
    def checked_values(self) -> tuple[Any, ...]:
        """The values that stand for every value this parameter can take."""
        return self.choices if self.choices is not None else (self.low, self.high)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """Study file ← ``key=value`` overrides (without the ``study.`` prefix), validated on its own
    (``check_params`` checks it against the training schema)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file not found: {path}")
    try:
        spec = OmegaConf.merge(OmegaConf.structured(StudySpec), OmegaConf.load(path))
        if overrides:
            spec = OmegaConf.merge(spec, OmegaConf.from_dotlist(overrides))
        spec = OmegaConf.to_object(spec)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"study file {path}: key {key!r}: {first_line}") from e
    spec.name = spec.name or path.stem
    _validate(spec, path)
    return spec


def parse_params(spec: StudySpec) -> tuple[Param, ...]:
    """The study's parameters, each checked for shape (not yet against the training schema)."""
    return tuple(_param(key, value, spec.sampler) for key, value in spec.params.items())


def check_params(params: tuple[Param, ...], config_path: str | None, overrides: list[str]) -> None:
    """Refuse, naming the key, any parameter that is not an option of the training schema, is
    owned by the study, is also set on the command line, or has a value the schema refuses."""
    options = flatten(OmegaConf.structured(Config))
    given = {o.split("=", 1)[0] for o in overrides}
    load_config(config_path, overrides)  # the base config on its own first
    for p in params:
        if p.key not in options:
            near = difflib.get_close_matches(p.key, options, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"params.{p.key}: not an option of the training schema{hint}")
        if isinstance(options[p.key], list):
            raise ConfigError(f"params.{p.key}: a list option; a study varies single values")
        if p.key.startswith(_STUDY_OWNED):
            raise ConfigError(f"params.{p.key}: set by the study for every trial, not a parameter")
        if p.key in given:
            raise ConfigError(f"params.{p.key}: also set on the command line; set it in one place")
        for value in p.checked_values:
            try:
                load_config(config_path, [*overrides, override(p.key, value)])
            except ConfigError as e:
                raise ConfigError(f"params.{p.key}={value!r}: {e}") from e


def override(key: str, value: Any) -> str:
    """``key=value`` as ``load_config`` reads it."""
    if isinstance(value, bool) or value is None:
        return f"{key}={'null' if value is None else str(value).lower()}"
    return f"{key}={value}"


def _validate(spec: StudySpec, path: Path) -> None:
    where = f"study file {path}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", spec.name):
        raise ConfigError(f"{where}: name {spec.name!r}: use letters, digits, '_', '-', '.'")
    if spec.sampler not in SAMPLERS:
        raise ConfigError(f"{where}: sampler {spec.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if spec.sampler == "tpe" and spec.trials < 1:
        raise ConfigError(f"{where}: trials: a tpe study needs trials >= 1")
    if spec.heartbeat_s < 1:
        raise ConfigError(f"{where}: heartbeat_s: must be >= 1")
    if spec.pruner.startup_trials < 0 or spec.pruner.warmup_epochs < 0:
        raise ConfigError(f"{where}: pruner: startup_trials and warmup_epochs must be >= 0")
    if not spec.params:
        raise ConfigError(f"{where}: params: no parameter to vary")
    if spec.storage and not re.match(r"(sqlite|postgresql|mysql)(\+\w+)?://", spec.storage):
        raise ConfigError(
            f"{where}: storage {spec.storage!r}: use sqlite:///FILE, postgresql://… or mysql://…"
        )


def _param(key: str, value: Any, sampler: str) -> Param:
    if isinstance(value, list):
        if not value or not all(_is_scalar(v) for v in value):
            raise ConfigError(f"params.{key}: give a non-empty list of single values")
        if len(set(map(repr, value))) != len(value):
            raise ConfigError(f"params.{key}: a value is listed twice")
        return Param(key, choices=tuple(value))
    if sampler == "grid":
        raise ConfigError(f"params.{key}: a grid study takes a list of values")
    if not isinstance(value, dict):
        raise ConfigError(f"params.{key}: give a list of values or {{low, high, log, step}}")
    unknown = sorted(set(value) - _RANGE_KEYS)
    if unknown:
        raise ConfigError(f"params.{key}.{unknown[0]}: unknown; a range has low, high, log, step")
    low, high = value.get("low"), value.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"params.{key}: a range needs numeric low and high")
    if not low < high:
        raise ConfigError(f"params.{key}: low must be below high")
    log, step = bool(value.get("log", False)), value.get("step")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"params.{key}: a log range needs low > 0 and no step")
    return Param(key, low=low, high=high, log=log, step=step)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
