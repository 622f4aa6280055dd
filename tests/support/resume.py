"""Resume equality at the trainer level: a second epoch run straight on, and the same epoch run by
a new trainer (fresh model and RNG, as in a new process) from the checkpoint the first left."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.training.data import TrainingData
from deepemocluster.training.trainer import Trainer


def epoch_metrics(trainer: Trainer) -> dict[str, float]:
    """One epoch's metrics without the times (which differ between runs)."""
    metrics = trainer.run_epoch()
    trainer.epoch += 1
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def second_epoch_straight_and_resumed(
    cfg, data: TrainingData, folder: Path, after_first: Callable[[Trainer], None] = lambda t: None
) -> tuple[dict[str, float], dict[str, float]]:
    """(the uninterrupted second epoch's metrics, the resumed one's); ``after_first`` sees the
    trainer after its first epoch."""
    whole = Trainer(cfg, data, torch.device("cpu"))
    epoch_metrics(whole)
    after_first(whole)
    whole.checkpoint("run").save(folder / "last.pt")  # what a run killed now leaves
    second = epoch_metrics(whole)
    resumed = Trainer(cfg, data, torch.device("cpu"))
    saved = Checkpoint.load(folder / "last.pt")
    resumed.model.load_state_dict(saved.model)
    resumed.load_state_dict(saved.trainer)
    return second, epoch_metrics(resumed)
