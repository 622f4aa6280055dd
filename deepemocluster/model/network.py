"""The whole model: encoder → (auxiliary head: cluster classifier or Siamese projection, regressor)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from deepemocluster.model.encoder import ChunkEncoder
from deepemocluster.model.heads import ClusterHead, Regressor
from deepemocluster.model.siamese import SiameseHead


class DeepEmoCluster(nn.Module):
    """At most one auxiliary head (``cluster`` or ``siamese``) beside the A/V/D regressor."""

    def __init__(
        self,
        encoder: ChunkEncoder,
        cluster: ClusterHead | None,
        regressor: Regressor,
        siamese: SiameseHead | None = None,
    ) -> None:
        super().__init__()
        if cluster is not None and siamese is not None:
            raise ValueError("one auxiliary head at a time: cluster or siamese")
        self.encoder = encoder
        self.cluster = cluster
        self.regressor = regressor
        self.siamese = siamese
        self.frozen_blocks = 0

    def forward(self, chunks: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B, frames, n_mels) → (auxiliary output: cluster logits, Siamese embeddings or None;
        A/V/D predictions (B, n_attributes))."""
        h = self.encoder(chunks)
        if self.cluster is not None:
            aux = self.cluster(h)
        else:
            aux = self.siamese(h) if self.siamese is not None else None
        return aux, self.regressor(h)

    def embed(self, chunks: torch.Tensor) -> torch.Tensor:
        """Chunk embeddings (use in eval mode): the cluster MLP's pre-activation output for
        clustering, or the Siamese embedding."""
        h = self.encoder(chunks)
        return self.cluster.embed(h) if self.cluster is not None else self.siamese(h)

    def freeze_encoder_blocks(self, n: int) -> None:
        """Freeze the first ``n`` convolution blocks (fine-tuning): no gradients, and their
        BatchNorm statistics stay fixed, since ``train()`` keeps those blocks in eval mode."""
        if not 0 <= n <= len(self.encoder.blocks):
            raise ValueError(f"cannot freeze {n} of {len(self.encoder.blocks)} encoder blocks")
        self.frozen_blocks = n
        for block in self.encoder.blocks[:n]:
            block.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> DeepEmoCluster:
        super().train(mode)
        for block in self.encoder.blocks[: self.frozen_blocks]:
            block.eval()
        return self


def build_model(cfg: DictConfig, n_mels: int) -> DeepEmoCluster:
    m = cfg.model
    encoder = ChunkEncoder(
        cfg.chunking.frames, n_mels, m.channels, m.strides, m.embed_dim, m.dropout
    )
    uses_clusters = m.aux_head == "cluster"
    cluster = ClusterHead(m.embed_dim, m.head_dim, cfg.cluster.k) if uses_clusters else None
    siamese = (
        SiameseHead(m.embed_dim, m.head_dim, cfg.siamese.embed_dim)
        if m.aux_head == "siamese"
        else None
    )
    regressor = Regressor(m.embed_dim, m.head_dim, len(m.attributes))
    return DeepEmoCluster(encoder, cluster, regressor, siamese)
