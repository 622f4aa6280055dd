"""CCC, NMI and the CCC loss against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.losses import ccc_loss
from deepemocluster.metrics import ccc, nmi


def test_ccc_hand_computed():
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 4.0, 4.0])
    # means 2.5 and 3; population variances 1.25 and 1; covariance 1
    assert ccc(y, p) == pytest.approx(2 * 1.0 / (1.25 + 1.0 + 0.25))
    assert ccc(y, y) == pytest.approx(1.0)
    assert ccc(y - 2.5, 2.5 - y) == pytest.approx(-1.0)
    assert ccc(y, y + 10) < 0.05  # correlation alone is not enough


def test_ccc_loss_is_one_minus_ccc_per_attribute():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    expected = np.mean([1 - ccc(y[:, j], p[:, j]) for j in range(3)])
    got = ccc_loss(torch.tensor(p), torch.tensor(y)).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_ccc_loss_gradient_pulls_predictions_towards_targets():
    y = torch.tensor([[1.0], [2.0], [3.0]])
    p = torch.tensor([[1.5], [2.2], [2.0]], requires_grad=True)
    ccc_loss(p, y).backward()
    assert p.grad[0, 0] > 0 and p.grad[2, 0] < 0


def test_nmi_values():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, np.array([5, 5, 9, 9, 7, 7])) == pytest.approx(1.0)  # label names do not matter
    rng = np.random.default_rng(0)
    assert nmi(rng.integers(0, 5, 20000), rng.integers(0, 5, 20000)) < 0.01
    # hand-computed: x=[0,0,1,1], y=[0,1,0,1] are independent → 0
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)
