"""The mel CNN front-end (``model.frontend=mel_cnn``), as in the reference: a VGG-style CNN over
(frames × n_mels) chunks, 3×3 convolutions with BatchNorm + ReLU, downsampling by stride (no
pooling), then one shared dense layer with dropout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from deepemocluster.model.frontend import FrontEnd


class MelCNN(FrontEnd):
    def __init__(
        self,
        frames: int,
        n_mels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        embed_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        blocks, in_ch = [], 1
        for out_ch, stride in zip(channels, strides, strict=True):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                )
            )
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        with torch.no_grad():
            flat = self._conv(torch.zeros(1, 1, frames, n_mels)).numel()
        self.dense = nn.Sequential(
            nn.Linear(flat, embed_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.embed_dim = embed_dim

    @classmethod
    def from_config(cls, cfg: DictConfig, n_mels: int) -> MelCNN:
        m = cfg.model
        return cls(cfg.chunking.frames, n_mels, m.channels, m.strides, m.embed_dim, m.dropout)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """(B, frames, n_mels) → (B, embed_dim)."""
        return self.dense(self._conv(chunks.unsqueeze(1)).flatten(1))
