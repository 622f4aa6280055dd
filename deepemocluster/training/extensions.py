"""Model extensions: what a model variant adds to a run besides its modules — a fit before the
first epoch, loss terms, a decision at every evaluation — behind one interface, so the trainer,
the step and the run name none of them.

An extension is built from the config and the run's data (``None``: not used by this config);
``build_extensions`` asks every factory in ``FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from omegaconf import DictConfig

from deepemocluster.losses import LossTerm
from deepemocluster.model import DeepEmoCluster
from deepemocluster.statistics_ridge.extension import StatisticsRidgeExtension
from deepemocluster.training.data import TrainingData


class Extension(Protocol):
    def loss_terms(self) -> list[LossTerm]:
        """Terms summed after the regressor's CCC, in this order."""

    def on_model(self, model: DeepEmoCluster) -> None:
        """The model was built, or took weights from elsewhere (transfer)."""

    def start_metrics(self) -> dict[str, float]:
        """Metrics logged once, before the first epoch."""

    def on_evaluate(
        self,
        outputs: dict[str, np.ndarray],
        ratings: np.ndarray,
        restore: Callable[[np.ndarray], np.ndarray],
    ) -> dict[str, float]:
        """Development report entries (rank 0) from the model's named z-scale ``outputs``, the
        1–7 ``ratings`` and the z-scale → 1–7 ``restore``; they replace the plain report's."""

    def on_report(self, model: DeepEmoCluster, report: dict[str, float]) -> None:
        """Every rank: act on the Development report rank 0 made."""


FACTORIES: tuple[Callable[[DictConfig, TrainingData], Extension | None], ...] = (
    StatisticsRidgeExtension.for_run,
)


def build_extensions(cfg: DictConfig, data: TrainingData) -> list[Extension]:
    return [e for factory in FACTORIES if (e := factory(cfg, data)) is not None]
