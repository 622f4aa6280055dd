"""A whole study: validate, open (or resume) it, run the workers, write and log the report.

MLflow: one parent run per study (its id is kept in the Optuna study, so every worker and every
rerun finds the same one), one nested run per trial. The parent carries the tag ``study=<name>``;
each trial's run carries ``study`` and ``study.trial``, and each Optuna trial the id of its run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf

from deepemocluster.config import flatten, load_config, resolve_path
from deepemocluster.config.schema import Config
from deepemocluster.errors import ConfigError, DeepEmoClusterError, Interrupted
from deepemocluster.study.objective import STUDY_TAG, Job
from deepemocluster.study.report import summary_lines, write_report
from deepemocluster.study.spec import StudySpec, check_params, parse_params
from deepemocluster.study.store import open_study, safe_url, storage_url
from deepemocluster.study.workers import run_workers
from deepemocluster.tracking import Tracker

log = logging.getLogger("deepemocluster")
PARENT_ATTR, CONFIG_ATTR = "mlflow_parent_run_id", "config"
# Options that may differ between the machines or workers of one study (paths, threads, store).
_MACHINE_LOCAL = (
    "tracking.",
    "data.root",
    "data.manifest",
    "data.unlabelled",
    "features.store",
    "features.workers",
    "transfer.source.root",
    "transfer.source.manifest",
    "transfer.source.unlabelled",
    "train.threads",
    "train.device",
    "train.loader_workers",
    "cluster.threads",
)


class StudyIncomplete(DeepEmoClusterError):
    """The study ran to its end but some trials failed (the report names them)."""


def run_study(
    spec: StudySpec, config_path: str | None, overrides: list[str], workers: int = 1
) -> dict:
    """Run (or resume) the study to completion and write its report; returns the summary."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: need at least 1")
    params = parse_params(spec)
    check_params(params, config_path, overrides)
    cfg = load_config(config_path, overrides)
    runs_dir = resolve_path(cfg.tracking.runs_dir)
    report_dir = runs_dir / spec.name / "report"
    url = storage_url(spec, runs_dir)
    study, created = open_study(spec, params, url, create=True)
    _check_config(study, cfg)
    tracker = _parent_run(study, spec, cfg, created)
    job = Job(config_path, tuple(overrides), spec, params, url, tracker.run_id)
    log.info("study %s: storage %s, MLflow run %s", spec.name, safe_url(url), tracker.run_id)
    status = "FAILED"
    try:
        if workers > 1:  # the corpus and its features once, not by every worker at once
            from deepemocluster.data.corpus import load_corpus

            load_corpus(cfg)
        run_workers(job, workers)
        attributes = list(cfg.model.attributes)
        summary = write_report(study, spec, params, attributes, cfg.model.aux_head, report_dir)
        _log_report(tracker, report_dir, summary)
        status = "FINISHED"
    except Interrupted:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)
    for line in summary_lines(summary):
        log.info("%s", line)
    if summary["fail"]:
        raise StudyIncomplete(f"study {spec.name}: {summary['fail']} trial(s) failed; {report_dir}")
    return summary


def _parent_run(study: optuna.Study, spec: StudySpec, cfg: DictConfig, created: bool) -> Tracker:
    """Open the study's parent run: the one its creator recorded, or a new one."""
    tracker = Tracker.open(cfg.tracking)
    run_id = study.user_attrs.get(PARENT_ATTR)
    deadline = time.monotonic() + 30
    while run_id is None and not created and time.monotonic() < deadline:
        time.sleep(1)  # the worker that created the study is creating the parent run
        run_id = study.user_attrs.get(PARENT_ATTR)
    tracker.start(spec.name, run_id=run_id)
    if run_id is None:
        study.set_user_attr(PARENT_ATTR, tracker.run_id)
        tracker.set_tags({STUDY_TAG: spec.name, "study.sampler": spec.sampler})
        tracker.log_params(flatten(cfg))
        tracker.log_text(OmegaConf.to_yaml(OmegaConf.structured(spec)), "study.yaml")
    return tracker


def _check_config(study: optuna.Study, cfg: DictConfig) -> None:
    """Every trial of a study trains with one config: a rerun with another is refused. An
    option that only one side knows (added or removed by an upgrade of this package) differs
    only when it is set to something other than its default."""
    current = {k: v for k, v in flatten(cfg).items() if not k.startswith(_MACHINE_LOCAL)}
    saved = study.user_attrs.get(CONFIG_ATTR)
    if saved is None:
        study.set_user_attr(CONFIG_ATTR, current)
        return
    default = flatten(OmegaConf.structured(Config))
    changed = sorted(
        k
        for k in saved.keys() | current.keys()
        if saved.get(k, default.get(k)) != current.get(k, default.get(k))
    )
    if changed:
        raise ConfigError(
            f"study {study.study_name!r} ran its trials with another training config "
            f"({', '.join(changed)} differ); give this one another study.name"
        )


def _log_report(tracker: Tracker, folder: Path, summary: dict) -> None:
    for path in sorted(folder.iterdir()):
        tracker.log_artifact(path, "report")
    counts = ("planned", "complete", "pruned", "fail", "running", "duplicates_skipped")
    metrics = {f"study/{k}": summary[k] for k in counts}
    metrics["study/retried"] = len(summary["retried"])
    if summary["best_value"] is not None:
        metrics["study/best_value"] = summary["best_value"]
    tracker.log_metrics(metrics)
