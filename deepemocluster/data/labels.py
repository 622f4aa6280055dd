"""Rating scales: targets are z-normalised with Train statistics for training, mapped back for use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScaler:
    """Train mean/std of each attribute: targets are z-normalised for training, mapped back to 1–7."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, ratings: np.ndarray) -> LabelScaler:
        return cls(ratings.mean(0), np.maximum(ratings.std(0), 1e-6))

    def normalise(self, ratings: np.ndarray) -> np.ndarray:
        return (ratings - self.mean) / self.std

    def restore(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean
