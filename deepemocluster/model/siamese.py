"""The Siamese head: a projection MLP from the shared encoder output to a metric embedding, and
the pair distance the pairwise losses and the few-shot classifiers measure in it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SiameseHead(nn.Module):
    """Linear → ReLU → Linear; both towers of the Siamese pair share it (and the encoder)."""

    def __init__(self, in_dim: int, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def pair_distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance over the last dimension (broadcasting): ``euclidean`` ‖a − b‖, or ``cosine``
    1 − cos(a, b) ∈ [0, 2]. The Euclidean square root is kept off 0 so its gradient stays finite
    for identical embeddings."""
    if metric == "euclidean":
        return ((a - b) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1)
    raise ValueError(f"unknown distance {metric!r} (euclidean | cosine)")
