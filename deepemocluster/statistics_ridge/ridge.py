"""Closed-form ridge regression with the regularisation chosen per attribute on Development.

One rule, used twice: the pooled-statistics baseline of the quality benchmark
(``benchmarks/pooled_ridge.py``) and the statistics teacher that gives unlabelled utterances
pseudo-ratings (``extension.py``). Features are standardised with the training set's
statistics; each attribute keeps the alpha whose predictions have the highest Development CCC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepemocluster.metrics import ccc

ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge: ``predict`` maps (n, d) features to (n, n_attributes) ratings."""

    mean: np.ndarray  # (d,) training-set feature means
    std: np.ndarray  # (d,) their standard deviations (1 where a feature is constant)
    weights: np.ndarray  # (d, n_attributes), each column fit with its own alpha
    intercept: np.ndarray  # (n_attributes,) the training ratings' means
    alphas: np.ndarray  # (n_attributes,) the alpha each attribute kept
    dev_ccc: np.ndarray  # (n_attributes,) its Development CCC

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) / self.std @ self.weights + self.intercept


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_dev: np.ndarray,
    y_dev: np.ndarray,
    alphas: tuple[float, ...] = ALPHAS,
) -> Ridge:
    """Fit on (x_train, y_train) for every alpha; keep, per attribute (column of y), the alpha
    with the highest CCC on (x_dev, y_dev)."""
    x_train = np.asarray(x_train, np.float64)
    y_train = np.asarray(y_train, np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    z, z_dev = (x_train - mean) / std, (np.asarray(x_dev, np.float64) - mean) / std
    intercept = y_train.mean(axis=0)
    gram, moment = z.T @ z, z.T @ (y_train - intercept)
    n_attributes = y_train.shape[1]
    best: list[tuple[float, float, np.ndarray] | None] = [None] * n_attributes
    for alpha in alphas:
        w = np.linalg.solve(gram + alpha * np.eye(len(gram)), moment)
        dev_pred = z_dev @ w + intercept
        for j in range(n_attributes):
            score = ccc(y_dev[:, j], dev_pred[:, j])
            if best[j] is None or score > best[j][0]:  # ties and NaN keep the smaller alpha
                best[j] = (score, alpha, w[:, j])
    return Ridge(
        mean,
        std,
        np.stack([b[2] for b in best], axis=1),
        intercept,
        np.array([b[1] for b in best]),
        np.array([b[0] for b in best]),
    )
