"""Per-chunk spectral statistics beside the CNN embedding (``model.statistics``).

The encoder downsamples a chunk to a 2 × 2 map, so the fine spectral envelope (formant positions,
spectral tilt) and the spread of each band over time reach the regressor only through whatever
the convolutions kept. These statistics give them to it directly: the same kind of numbers a
ridge on pooled statistics (the baseline in docs/results.md) is fit on, but per chunk.
"""

from __future__ import annotations

import torch
from torch import nn


class ChunkStatistics(nn.Module):
    """(B, frames, F) normalised chunks → (B, 3 × F): per feature (mel bin), the mean and std
    over the chunk's frames and the std of the frame-to-frame delta. No parameters."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.dim = 3 * feature_dim

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        x = chunks.float()
        delta = x[:, 1:] - x[:, :-1]
        return torch.cat([x.mean(1), x.std(1), delta.std(1)], dim=1)
