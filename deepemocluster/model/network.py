"""The whole model: encoder → (cluster head, regressor)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from deepemocluster.model.encoder import ChunkEncoder
from deepemocluster.model.heads import ClusterHead, Regressor


class DeepEmoCluster(nn.Module):
    def __init__(
        self, encoder: ChunkEncoder, cluster: ClusterHead | None, regressor: Regressor
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.cluster = cluster
        self.regressor = regressor

    def forward(self, chunks: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B, frames, n_mels) → (cluster logits or None, A/V/D predictions (B, n_attributes))."""
        h = self.encoder(chunks)
        logits = self.cluster(h) if self.cluster is not None else None
        return logits, self.regressor(h)

    def embed(self, chunks: torch.Tensor) -> torch.Tensor:
        """Clustering features: the cluster MLP's pre-activation output (use in eval mode)."""
        return self.cluster.embed(self.encoder(chunks))


def build_model(cfg: DictConfig, n_mels: int) -> DeepEmoCluster:
    m = cfg.model
    encoder = ChunkEncoder(
        cfg.chunking.frames, n_mels, m.channels, m.strides, m.embed_dim, m.dropout
    )
    uses_clusters = cfg.cluster.enabled and m.aux_head == "cluster"
    cluster = ClusterHead(m.embed_dim, m.head_dim, cfg.cluster.k) if uses_clusters else None
    return DeepEmoCluster(encoder, cluster, Regressor(m.embed_dim, m.head_dim, len(m.attributes)))
