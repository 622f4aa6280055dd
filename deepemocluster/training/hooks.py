"""What the trainer tells the code around it. A run's folder, tracking and checkpoints, a
benchmark's timers and a study's pruner all observe training through these few calls instead of
reaching into the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class StopRun(Exception):  # noqa: N818  (a request, not an error)
    """Raised by a hook to end a run early on purpose (a study pruning a hopeless trial): the run
    is closed as KILLED with tag ``stopped_by=<reason>`` and the exception reaches the caller."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Hooks:
    """Subclass and override what you need; every call is made on every rank unless noted."""

    def on_run_start(self, run_id: str, run_dir: Path) -> None:
        """The MLflow run is open and its folder exists (rank 0 only)."""

    def on_phase(self, name: str, seconds: float) -> None:
        """A phase of an epoch finished: ``embed``, ``kmeans``, ``train`` or ``evaluate``."""

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        """An optimiser step finished; ``losses`` are its unweighted loss terms."""

    def on_clustering(self, epoch: int, stage: str, assignments: np.ndarray) -> None:
        """Epoch ``epoch`` (counted from 1) clustered its chunks: ``stage`` is ``joint`` or
        ``labelled`` (two_stage's unlabelled clustering is not reported). Rank 0 only."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Epoch ``epoch`` (counted from 1) is done; ``metrics`` include ``dev/ccc_mean``. The
        trainer's best-epoch state is already updated. May raise StopRun."""
