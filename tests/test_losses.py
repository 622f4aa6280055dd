"""The two pair losses and the pair distance on hand-computed pairs."""

from __future__ import annotations

import pytest
import torch

from deepemocluster.losses import contrastive_loss, relative_distance_loss
from deepemocluster.model.siamese import pair_distance

SAME = torch.tensor([True, True, False, False])


def test_contrastive_loss_value():
    d = torch.tensor([0.5, 0.0, 0.3, 2.0])
    # same: 0.5², 0²; different, margin 1: (1 − 0.3)², max(0, 1 − 2)² = 0
    expected = (0.25 + 0.0 + 0.49 + 0.0) / 4
    assert contrastive_loss(d, SAME, margin=1.0).item() == pytest.approx(expected)


def test_relative_distance_loss_value_bounds_and_scale_invariance():
    d_same, d_diff = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])
    expected = (1 / 3 + 3 / 4) / 2  # each same pair against its different pair
    assert relative_distance_loss(d_same, d_diff).item() == pytest.approx(expected)
    assert relative_distance_loss(10 * d_same, 10 * d_diff).item() == pytest.approx(expected)
    assert relative_distance_loss(torch.zeros(2), d_diff).item() == 0.0
    assert relative_distance_loss(d_same, torch.zeros(2)).item() == 1.0


def test_relative_distance_loss_is_not_bought_by_one_far_pair():
    """One different pair a million times further away barely helps: its term is bounded."""
    d_same, d_diff = torch.ones(4), torch.ones(4)
    far = torch.tensor([1.0, 1.0, 1.0, 1e6])
    assert relative_distance_loss(d_same, far).item() > 0.37  # 0.5 → (3 × 0.5 + 0) / 4
    assert relative_distance_loss(d_same, d_diff).item() == pytest.approx(0.5)


def test_relative_distance_loss_needs_matched_pairs():
    with pytest.raises(ValueError, match="as many same pairs"):
        relative_distance_loss(torch.ones(3), torch.ones(2))


@pytest.mark.parametrize(
    "loss",
    [
        lambda d, s: contrastive_loss(d, s, margin=5.0),
        lambda d, s: relative_distance_loss(d[s], d[~s]),
    ],
    ids=["contrastive", "relative"],
)
def test_gradient_pulls_same_pairs_and_pushes_different_pairs(loss):
    d = torch.tensor([1.0, 2.0, 1.5, 3.0], requires_grad=True)
    loss(d, SAME).backward()
    assert (d.grad[:2] > 0).all()  # descending the gradient shrinks same-pair distances
    assert (d.grad[2:] < 0).all()  # and grows different-pair distances


def test_contrastive_ignores_different_pairs_beyond_the_margin():
    d = torch.tensor([1.0, 2.0, 1.5, 3.0], requires_grad=True)
    contrastive_loss(d, SAME, margin=2.0).backward()
    assert d.grad[2] < 0 and d.grad[3] == 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("loss_name", ["contrastive", "relative"])
def test_one_step_on_embeddings_moves_pairs_the_right_way(metric, loss_name):
    """Through the distance: same pairs get closer, different pairs further apart."""
    torch.manual_seed(0)
    z = torch.randn(8, 4, requires_grad=True)
    left, right = torch.tensor([0, 2, 4, 6]), torch.tensor([1, 3, 5, 7])
    same = torch.tensor([True, True, False, False])
    d0 = pair_distance(z[left], z[right], metric).detach()
    d = pair_distance(z[left], z[right], metric)
    loss = (
        contrastive_loss(d, same, 3.0)
        if loss_name == "contrastive"
        else relative_distance_loss(d[same], d[~same])
    )
    loss.backward()
    with torch.no_grad():
        d1 = pair_distance((z - 0.01 * z.grad)[left], (z - 0.01 * z.grad)[right], metric)
    assert (d1[:2] < d0[:2]).all() and (d1[2:] > d0[2:]).all()


def test_pair_distance_values_and_finite_gradient_at_zero():
    a, b = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 4.0], [2.0, 2.0]])
    assert pair_distance(a, b, "euclidean").tolist() == pytest.approx([5.0, 2**0.5])
    assert pair_distance(a, b, "cosine").tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    z = torch.ones(1, 3, requires_grad=True)
    pair_distance(z, z.detach().clone(), "euclidean").sum().backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="manhattan"):
        pair_distance(a, b, "manhattan")
