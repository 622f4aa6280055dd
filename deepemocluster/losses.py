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
