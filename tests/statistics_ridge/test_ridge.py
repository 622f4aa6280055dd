"""The ridge shared by the baseline and the statistics teacher: the closed form, and the alpha of
each attribute chosen on Development independently of the others."""

from __future__ import annotations

import numpy as np
import pytest

from deepemocluster.metrics import ccc
from deepemocluster.statistics_ridge.ridge import ALPHAS, fit_ridge


def _data(rng: np.random.Generator, n: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features with a constant column; attribute 0 is linear in them with little noise,
    attribute 1 is one weak feature under heavy noise (so it wants a larger alpha)."""
    x = rng.normal(size=(n, len(w)))
    x[:, -1] = 3.0
    y = np.stack([x @ w + 0.1 * rng.normal(size=n), 0.3 * x[:, 0] + rng.normal(size=n)], axis=1)
    return x, y


def test_one_alpha_is_the_closed_form_of_penalised_least_squares():
    rng = np.random.default_rng(0)
    x, y = _data(rng, 40, rng.normal(size=12))
    alpha = 7.0
    ridge = fit_ridge(x, y, x, y, alphas=(alpha,))
    # the same problem as an ordinary least-squares one: rows sqrt(alpha)·I appended
    std = x.std(0)
    std[std == 0] = 1.0
    z = (x - x.mean(0)) / std
    stacked = np.vstack([z, np.sqrt(alpha) * np.eye(z.shape[1])])
    target = np.vstack([y - y.mean(0), np.zeros((z.shape[1], y.shape[1]))])
    weights = np.linalg.lstsq(stacked, target, rcond=None)[0]
    assert np.allclose(ridge.weights, weights, atol=1e-10)
    assert np.allclose(ridge.predict(x), z @ weights + y.mean(0))
    assert np.all(np.isfinite(ridge.predict(x)))  # the constant column did not divide by 0


def test_each_attribute_keeps_the_alpha_with_its_best_development_ccc():
    rng = np.random.default_rng(1)
    w = rng.normal(size=20)
    (x, y), (x_dev, y_dev) = _data(rng, 30, w), _data(rng, 200, w)
    ridge = fit_ridge(x, y, x_dev, y_dev)
    single = [fit_ridge(x, y, x_dev, y_dev, alphas=(a,)) for a in ALPHAS]
    for j in range(2):
        scores = [ccc(y_dev[:, j], r.predict(x_dev)[:, j]) for r in single]
        assert ridge.dev_ccc[j] == pytest.approx(max(scores))
        assert ridge.alphas[j] == ALPHAS[int(np.argmax(scores))]
        assert np.allclose(ridge.weights[:, j], single[int(np.argmax(scores))].weights[:, j])
    # the noisy attribute is regularised harder than the clean one
    assert ridge.alphas[1] > ridge.alphas[0]
