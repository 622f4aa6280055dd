"""Heads on the shared 256-d encoder output."""

from __future__ import annotations

import torch
from torch import nn


class ClusterHead(nn.Module):
    """MLP whose pre-activation output is the clustering embedding, then a K-way top layer.

    The top layer is re-created after each re-clustering: cluster ids are arbitrary and permuted
    between clusterings, so old class weights mean nothing for the new ids.
    """

    def __init__(self, in_dim: int, hidden: int, k: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.top = nn.Linear(hidden, k)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return self.hidden(h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.top(torch.relu(self.hidden(h)))

    def reset_top(self, k: int) -> nn.Linear:
        device = self.top.weight.device
        self.top = nn.Linear(self.hidden.out_features, k).to(device)
        return self.top


class Regressor(nn.Module):
    """Multi-task arousal/valence/dominance (or a subset) on z-normalised targets."""

    def __init__(self, in_dim: int, hidden: int, n_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_outputs)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
