"""The front-end interface: what turns the stored features of one chunk into the chunk embedding
that the heads share.

A front-end declares the features it reads (``data.features.feature_settings`` says what the
feature store computes for ``model.frontend``) and is built from the config and the width of
those features. The heads, the trainer and the exports see only this interface, so a second
front-end is a module and an entry in ``model.build.FRONTENDS``, not a flag in every forward
path.
"""

from __future__ import annotations

import torch
from torch import nn


class FrontEnd(nn.Module):
    """(B, frames, feature_dim) normalised chunks → (B, embed_dim) chunk embeddings.

    ``blocks``: its layers in input order, the units that fine-tuning may freeze (a frozen block
    gets no gradients and keeps its normalisation statistics)."""

    embed_dim: int
    blocks: nn.ModuleList

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
