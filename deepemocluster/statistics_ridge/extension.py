"""What the statistics ridge adds to a run (``training/extensions.py``): fit the ridge before the
first epoch, put it into the model, add its loss terms, and choose the readout's mixes on
Development at every evaluation.

On for ``model.ridge_readout`` (the readout) or ``train.teacher_weight > 0`` (the teacher);
one fit serves both (``fit.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.errors import ConfigError
from deepemocluster.losses import LossTerm
from deepemocluster.model import DeepEmoCluster
from deepemocluster.statistics_ridge.fit import (
    StatisticsRidge,
    fit_statistics_ridge,
    statistics_ratings,
)
from deepemocluster.statistics_ridge.readout import choose_mixes
from deepemocluster.statistics_ridge.terms import ReadoutCCC, TeacherCCC


class StatisticsRidgeExtension:
    """The ridge of one run, with the ratings its terms train against."""

    def __init__(self, cfg: DictConfig, fitted: StatisticsRidge, terms: list[LossTerm]) -> None:
        self.attributes = list(cfg.model.attributes)
        self.readout = bool(cfg.model.ridge_readout)
        self.fitted, self.terms = fitted, terms

    @classmethod
    def for_run(cls, cfg: DictConfig, data) -> StatisticsRidgeExtension | None:
        """The extension of a run on ``data`` (its ``TrainingData``), or None when the config
        uses neither the readout nor the teacher."""
        teacher_weight = cfg.train.teacher_weight
        if teacher_weight < 0:
            raise ConfigError(f"train.teacher_weight must be ≥ 0, got {teacher_weight}")
        if teacher_weight > 0 and cfg.model.aux_head != "cluster":
            raise ConfigError(
                f"train.teacher_weight rates unlabelled chunks, which only model.aux_head=cluster "
                f"trains on (got {cfg.model.aux_head!r}); set train.teacher_weight=0"
            )
        if not (cfg.model.ridge_readout or teacher_weight > 0):
            return None
        dev_targets = data.scaler.normalise(data.ratings(data.dev, list(cfg.model.attributes)))
        fitted = fit_statistics_ridge(
            data.train, data.n_labelled, data.dev, dev_targets, cfg.model.ridge_readout
        )
        unlabelled = statistics_ratings(data.train, fitted.ridge, first=data.n_labelled)
        terms: list[LossTerm] = []
        if cfg.model.ridge_readout:
            ratings = torch.cat([fitted.out_of_fold, unlabelled])
            terms.append(ReadoutCCC(cfg.train.ccc_weight, ratings))
        if teacher_weight > 0:
            terms.append(TeacherCCC(teacher_weight, torch.cat([fitted.in_sample, unlabelled])))
        return cls(cfg, fitted, terms)

    def loss_terms(self) -> list[LossTerm]:
        return self.terms

    def on_model(self, model: DeepEmoCluster) -> None:
        """A new model, or one that took another run's weights (transfer), reads this run's
        ridge."""
        if self.readout:
            model.readout.load_ridge(self.fitted.ridge)

    def start_metrics(self) -> dict[str, float]:
        """The ridge's Development CCC: how good a teacher or readout it is."""
        dev = self.fitted.ridge.dev_ccc
        return {
            f"statistics_ridge/dev_ccc_{a}": float(v)
            for a, v in zip(self.attributes, dev, strict=True)
        }

    def on_evaluate(
        self,
        outputs: dict[str, np.ndarray],
        ratings: np.ndarray,
        restore: Callable[[np.ndarray], np.ndarray],
    ) -> dict[str, float]:
        """Development CCC at each attribute's best mix of the plain prediction and the
        readout's (``readout_mix_<attribute>``), from the model's z-scale ``outputs``."""
        if not self.readout:
            return {}
        mixes, scores = choose_mixes(
            ratings, restore(outputs["plain"]), restore(outputs["read_out"])
        )
        report = {f"ccc_{a}": float(v) for a, v in zip(self.attributes, scores, strict=True)}
        report["ccc_mean"] = float(scores.mean())
        return report | {
            f"readout_mix_{a}": float(m) for a, m in zip(self.attributes, mixes, strict=True)
        }

    def on_report(self, model: DeepEmoCluster, report: dict[str, float]) -> None:
        """Every rank takes the mixes rank 0 chose."""
        if self.readout:
            mixes = [report[f"readout_mix_{a}"] for a in self.attributes]
            model.readout.mix.copy_(torch.tensor(mixes))
