"""Training losses."""

from __future__ import annotations

import torch


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of (1 − CCC), computed over the batch; (B, A) inputs."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    ccc = 2.0 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)
    return (1.0 - ccc).mean()


def contrastive_loss(distance: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell, Chopra & LeCun (2006), the baseline: mean over pairs of d² for same pairs and
    max(0, margin − d)² for different ones. Every different pair inside the margin is pushed out,
    however far the same pairs already are."""
    same = same.to(distance.dtype)
    push = torch.clamp(margin - distance, min=0.0) ** 2
    return (same * distance**2 + (1.0 - same) * push).mean()


def relative_distance_loss(
    distance: torch.Tensor, same: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Our reading of Feng & Chaspari's (2020) modified distance loss: only the *relative* gap
    between same-class and different-class pairs counts,

        L = d̄_same / max(d̄_same + d̄_diff, eps)   ∈ [0, 1],

    with d̄ the mean distance over the batch's pairs of each kind. No margin to tune; scaling every
    embedding by s > 0 leaves L unchanged, so the loss cannot be lowered by inflating (or
    collapsing) the space, only by reordering it. Needs at least one pair of each kind."""
    same = same.bool()
    if not same.any() or same.all():
        raise ValueError("relative_distance_loss needs at least one same and one different pair")
    d_same, d_diff = distance[same].mean(), distance[~same].mean()
    return d_same / torch.clamp(d_same + d_diff, min=eps)
