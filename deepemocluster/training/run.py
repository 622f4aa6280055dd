"""One tracked training run: folder, MLflow run, resume, signals, the epochs, the final stage.

Rank 0 (or the only process) does the files and the tracking; under torchrun the other ranks
run the same epochs and nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster import clustering
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import flatten, resolve_path
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.segments import write_segments_csv
from deepemocluster.errors import ConfigError, Interrupted, TooManyBadFilesError, TrackingError
from deepemocluster.runtime import distributed
from deepemocluster.runtime.heap import release_free_heap
from deepemocluster.tracking import Tracker
from deepemocluster.training.data import TrainingData, build_data
from deepemocluster.training.hooks import Hooks, StopRun
from deepemocluster.training.run_folder import RunFolder
from deepemocluster.training.signals import StopOnSignals
from deepemocluster.training.trainer import Trainer

log = logging.getLogger("deepemocluster")


def run(
    cfg: DictConfig,
    config_name: str = "default",
    parent_run_id: str | None = None,
    hooks: Sequence[Hooks] = (),
) -> dict[str, float]:
    """Train, evaluate and track one run (an MLflow child of ``parent_run_id`` when given);
    returns the final test metrics (rank 0; other torchrun ranks return an empty dict)."""
    torch.set_num_threads(cfg.train.threads)
    clustering.set_threads(cfg.cluster.threads or cfg.train.threads)
    world, device = distributed.init(select_device(cfg.train.device), cfg.train.dist_timeout_min)
    try:
        if world.is_main:
            result = _run_on_rank_zero(cfg, config_name, parent_run_id, device, world, hooks)
        else:
            result = _run_on_other_rank(cfg, device, world, hooks)
        # A finished run's ranks leave together: a rank that tore its process group down while
        # rank 0 was still in its final stage aborted now and then (SIGABRT in a 2-rank run). A
        # failed run skips this, so torchrun ends the other ranks at once instead of them waiting.
        distributed.barrier(world)
        return result
    finally:
        distributed.shutdown(world)


def select_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


class Recorder(Hooks):
    """The run's own hook: each epoch's metrics, assignments and checkpoints."""

    def __init__(self, folder: RunFolder, tracker: Tracker, run_id: str) -> None:
        self.folder, self.tracker, self.run_id = folder, tracker, run_id
        self.trainer: Trainer | None = None
        self.epoch_s: float | None = None  # the last epoch's time, to size the final stage by

    def on_clustering(self, epoch: int, stage: str, assignments: np.ndarray) -> None:
        self.folder.save_assignments(f"epoch_{epoch:03d}", assignments)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        t = self.trainer
        self.epoch_s = metrics.get("time/epoch_s")
        if t.best_epoch == epoch:
            t.checkpoint(self.run_id).save(self.folder.best)
        # Logged before checkpoint_last: when logging fails, resume repeats (and logs) this
        # epoch with identical numbers instead of losing its metrics.
        self.tracker.log_metrics(metrics, step=epoch)
        if t.clusters:
            self.tracker.log_artifact(self.folder.assignments(f"epoch_{epoch:03d}"), "assignments")
        t.checkpoint(self.run_id).save(self.folder.last)
        log.info("epoch %d/%d  %s", epoch, t.cfg.train.epochs, _format(metrics))


def _run_on_rank_zero(
    cfg: DictConfig,
    config_name: str,
    parent_run_id: str | None,
    device: torch.device,
    world: distributed.World,
    hooks: Sequence[Hooks],
) -> dict[str, float]:
    """The run as rank 0 (or the only process) does it: run folder, tracking, final stage."""
    run_name = cfg.tracking.run_name or f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = RunFolder(resolve_path(cfg.tracking.runs_dir) / run_name)
    with StopOnSignals() as signals:
        # The store first: an unreachable server leaves no run folder behind, so the very same
        # command works once the server is up.
        tracker = Tracker.open(cfg.tracking)
        resume_from = folder.prepare(cfg)
        folder.log_to_file()
        run_id = tracker.start(run_name, run_id=folder.saved_run_id(), parent_run_id=parent_run_id)
        resume_hint = f"train.resume=true tracking.run_name={run_name}"
        try:
            folder.save_run_id(run_id, run_name)
            log.info("run %s (MLflow run %s, store %s)", run_name, run_id, tracker.uri)
            tracker.log_params(flatten(cfg))
            for hook in hooks:
                hook.on_run_start(run_id, folder.path)
            test = _train_and_test(
                cfg, folder, run_id, tracker, device, resume_from, signals, world, hooks
            )
            tracker.end("FINISHED")
        except Interrupted:
            _end_quietly(tracker, "KILLED")
            log.error("to resume: the same command with %s", resume_hint)
            raise
        except StopRun as e:
            try:
                tracker.set_tags({"stopped_by": e.reason})
            except TrackingError as te:
                log.warning("%s", te)
            _end_quietly(tracker, "KILLED")
            log.info("run %s stopped early: %s", run_name, e.reason)
            raise
        except TrackingError as e:
            _end_quietly(tracker, "FAILED")
            raise TrackingError(
                f"{e}\nThe checkpoints in {folder.path} are intact ({folder.progress()}); once "
                f"the tracking store is reachable again, resume with the same command plus {resume_hint}"
            ) from e
        except BaseException:
            _end_quietly(tracker, "FAILED")
            raise
    return test


def _train_and_test(
    cfg: DictConfig,
    folder: RunFolder,
    run_id: str,
    tracker: Tracker,
    device: torch.device,
    resume_from: Checkpoint | None,
    signals: StopOnSignals,
    world: distributed.World,
    hooks: Sequence[Hooks],
) -> dict[str, float]:
    data = _load_data(cfg, folder, tracker)
    distributed.barrier(world)  # the other ranks load the corpus once features are extracted
    recorder = Recorder(folder, tracker, run_id)
    trainer = Trainer(cfg, data, device, world, [recorder, *hooks])
    recorder.trainer = trainer
    log.info("%s", trainer.amp_reason)
    if start := trainer.start_metrics():
        log.info("before the first epoch: %s", _format(start))
        tracker.log_metrics(start)
    tracker.log_params({"train.amp_resolved": "bfloat16" if trainer.amp else "float32"})
    distributed.broadcast_object(resume_from, world)
    if resume_from is not None:
        _resume(trainer, resume_from)
    _fit(trainer, signals)
    return _final_stage(cfg, folder, run_id, tracker, trainer, recorder.epoch_s)


class _Timer:
    """Seconds since it was made and of each named part, for the final stage's log line."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - began

    def report(self, epoch_s: float | None) -> str:
        total = time.perf_counter() - self.began
        share = f", {total / epoch_s:.2f} of the last epoch" if epoch_s else ""
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return f"{total:.1f} s{share} ({parts})"


def _final_stage(
    cfg: DictConfig,
    folder: RunFolder,
    run_id: str,
    tracker: Tracker,
    trainer: Trainer,
    epoch_s: float | None,
) -> dict[str, float]:
    """After the epochs, each pass once, shared by all that need it: one load of the best
    checkpoint, one Test pass (the Test metrics and the report's figure), one embedding of Train
    (the final clustering, its assignments and the report's tables); docs/decisions.md."""
    data, timer = trainer.data, _Timer()
    with timer("test"):
        best = Checkpoint.load(folder.best)
        trainer.model.load_state_dict(best.model)
        predicted = trainer.predict(data.test)
        test = {f"test/{k}": v for k, v in trainer.evaluate(data.test, predicted).items()}
        test["best_epoch"] = float(trainer.best_epoch)
        tracker.log_metrics(test)
        release_free_heap()  # the Test batches' heap: the final clustering peaks next
    assignments = None
    if trainer.clusters:
        with timer("clustering"):
            assignments, best.clusters = trainer.final_clustering()
            best.save(folder.best)
            tracker.log_artifact(folder.save_assignments("final", assignments), "assignments")
    tracker.log_artifact(folder.best, "checkpoints")
    tracker.log_artifact(folder.path / "utterances.txt", "assignments")
    # imported here: plotting and the report are needed only once, at the very end
    from deepemocluster.analysis.analyze import Finished, analyze_finished
    from deepemocluster.serving import pyfunc

    with timer("model"):
        pyfunc.log_model(folder.best, list(cfg.model.attributes))
    if assignments is not None and cfg.tracking.report:
        ratings = np.clip(
            data.scaler.restore(predicted), *best.rating_range
        )  # as serving.backend.TorchBackend rates
        finished = Finished(
            best.config(), data.corpus, trainer.best_epoch, data.train.rows, assignments, ratings
        )
        with timer("report"):
            try:  # the report is a by-product: it must not turn a finished training into a failure
                analyze_finished(run_id, tracker.uri, finished)
            except Interrupted:
                raise
            except Exception:
                log.exception("analysis failed; retry: python -m deepemocluster.analyze %s", run_id)
    log.info("final stage: %s", timer.report(epoch_s))
    tracker.log_artifact(folder.path / "train.log")
    log.info("done: best epoch %d, %s", trainer.best_epoch, _format(test))
    return test


def _load_data(cfg: DictConfig, folder: RunFolder, tracker: Tracker) -> TrainingData:
    """The corpus (features extracted once) and what the run trains on, recorded in the folder
    and the MLflow run."""
    try:
        corpus = load_corpus(cfg)
    except TooManyBadFilesError as e:  # the list is what the user needs to fix the data
        skipped = folder.write_skipped(e.skipped)
        try:
            tracker.log_artifact(skipped)
        except TrackingError as te:
            log.warning("%s", te)
        raise TooManyBadFilesError(f"{e}; all listed in {skipped}", e.skipped) from e
    data = build_data(corpus, cfg)
    folder.write_skipped(corpus.skipped)
    n_segments = write_segments_csv(folder.path / "segments.csv", corpus.manifest)
    tracker.set_tags(
        {
            "git_commit": _git_commit(),
            "data_fingerprint": corpus.fingerprint,
            "run_dir": str(folder.path),
        }
    )
    tracker.log_artifact(folder.path / "config.yaml")
    tracker.log_artifact(folder.path / "skipped.csv")
    tracker.log_artifact(folder.path / "segments.csv")
    (folder.path / "utterances.txt").write_text(
        "\n".join(corpus.manifest[r].id for r in data.train.rows) + "\n"
    )
    log.info(
        "data: %d labelled + %d unlabelled training utterances (%d of them segments of long "
        "recordings), %d dev, %d test, %d skipped files",
        data.n_labelled,
        len(data.train) - data.n_labelled,
        n_segments,
        len(data.dev),
        len(data.test),
        len(corpus.skipped),
    )
    return data


def _run_on_other_rank(
    cfg: DictConfig, device: torch.device, world: distributed.World, hooks: Sequence[Hooks]
) -> dict[str, float]:
    """The run as a torchrun rank other than 0 does it: the same epochs, with no files, no
    tracking and no final stage (rank 0 does those)."""
    with StopOnSignals() as signals:
        distributed.barrier(world)  # rank 0 has extracted the features
        trainer = Trainer(cfg, build_data(load_corpus(cfg), cfg), device, world, hooks)
        resume_from = distributed.broadcast_object(None, world)
        if resume_from is not None:
            _resume(trainer, resume_from)
        _fit(trainer, signals)
    return {}


def _resume(trainer: Trainer, checkpoint: Checkpoint) -> None:
    trainer.model.load_state_dict(checkpoint.model)
    trainer.load_state_dict(checkpoint.trainer)
    log.info("resumed after epoch %d", trainer.epoch)


def _fit(trainer: Trainer, signals: StopOnSignals) -> None:
    """The epochs; meanwhile a signal stops the trainer at its next step (signals.py)."""
    signals.attached = trainer
    try:
        trainer.fit()
    finally:
        signals.attached = None


def _end_quietly(tracker: Tracker, status: str) -> None:
    """Close the MLflow run after a failure without masking that failure (the store may be the
    thing that is gone)."""
    try:
        tracker.end(status)
    except TrackingError as e:
        log.warning("%s", e)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _format(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
