"""The whole model: encoder → (auxiliary head: cluster classifier or Siamese projection, regressor).

The auxiliary heads always work per chunk (pseudo-labels and pairs are per chunk, as in the
reference); the regressor works per utterance through ``model.pooling`` (``pooling.py``). With
``model.ridge_readout`` a residual regressor beside it learns what a fixed ridge on the chunk
statistics misses; in eval mode each attribute's prediction mixes the two as chosen on
Development (``readout.py``); in training both outputs come out and the step adds the ridge's
ratings per utterance (``training/step.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from omegaconf import DictConfig
from torch import nn

from deepemocluster.model.encoder import ChunkEncoder
from deepemocluster.model.heads import ClusterHead, Regressor
from deepemocluster.model.pooling import AttentionPooling, mean_over_chunks, pad
from deepemocluster.model.siamese import SiameseHead
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.statistics_ridge.readout import RidgeReadout


class UtteranceOutputs(NamedTuple):
    """One pass over the chunks of whole utterances. ``chunks``: per-chunk A/V/D predictions
    (N, A), only with mean pooling (where they are what the utterance averages), else None;
    ``utterances``: (U, A)."""

    aux: torch.Tensor | None
    chunks: torch.Tensor | None
    utterances: torch.Tensor


class DeepEmoCluster(nn.Module):
    """At most one auxiliary head (``cluster`` or ``siamese``) beside the A/V/D regressor."""

    def __init__(
        self,
        encoder: ChunkEncoder,
        cluster: ClusterHead | None,
        regressor: Regressor,
        siamese: SiameseHead | None = None,
        pooling: AttentionPooling | None = None,
        statistics: ChunkStatistics | None = None,
        readout: RidgeReadout | None = None,
    ) -> None:
        super().__init__()
        if cluster is not None and siamese is not None:
            raise ValueError("one auxiliary head at a time: cluster or siamese")
        self.encoder = encoder
        self.cluster = cluster
        self.regressor = regressor
        self.siamese = siamese
        # None: mean of chunk predictions (and a state_dict without pooling keys, as before it)
        self.pooling = pooling
        # None: the regressor sees the CNN embedding alone (as the reference)
        self.statistics = statistics
        # None: the network's prediction alone (as the reference)
        self.readout = readout
        self.frozen_blocks = 0

    def forward(
        self, chunks: torch.Tensor, counts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(N, frames, n_mels) chunks, utterance after utterance, ``counts`` (U,) chunks each →
        (auxiliary output per chunk: cluster logits, Siamese embeddings or None; A/V/D per
        utterance (U, n_attributes)). Without ``counts`` every chunk is an utterance of its own:
        its A/V/D are the chunk's own prediction (a one-chunk utterance's, under attention)."""
        if counts is not None:
            out = self.forward_utterances(chunks, counts)
            return out.aux, out.utterances
        h = self.encoder(chunks)
        return self._aux(h), self._read_out(self._regress(self._regressor_input(h, chunks)), chunks)

    def forward_utterances(self, chunks: torch.Tensor, counts: torch.Tensor) -> UtteranceOutputs:
        """Chunks of whole utterances, flat (N, frames, n_mels), utterance after utterance, with
        ``counts`` (U,) chunks each → auxiliary outputs per chunk and A/V/D per utterance. Only
        real chunks go through the encoder, so padding never enters BatchNorm statistics."""
        h = self.encoder(chunks)
        aux, r = self._aux(h), self._regressor_input(h, chunks)
        if self.pooling is None:
            chunk_pred = self._read_out(self._regress(r), chunks)
            return UtteranceOutputs(aux, chunk_pred, mean_over_chunks(*pad(chunk_pred, counts)))
        pred = self._regress(self.pooling(*pad(r, counts)))
        if self._reads_out:
            pred = self.readout.combine(pred, mean_over_chunks(*pad(self.readout(chunks), counts)))
        return UtteranceOutputs(aux, None, pred)

    def equal_utterances(
        self, chunks: torch.Tensor, n_chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Utterances of exactly ``n_chunks`` chunks each, flat (U × n_chunks, frames, n_mels) →
        (encoder output per chunk, A/V/D per utterance (U, n_attributes)). Reshapes only, no
        padding: the form the ONNX graph exports (deepemocluster/serving/export.py)."""
        h = self.encoder(chunks)
        r = self._regressor_input(h, chunks)
        if self.pooling is None:
            chunk_pred = self._read_out(self._regress(r), chunks)
            return h, chunk_pred.reshape(-1, n_chunks, chunk_pred.shape[1]).mean(1)
        r = r.reshape(-1, n_chunks, r.shape[1])
        every = torch.ones(r.shape[:2], dtype=torch.bool, device=r.device)
        pred = self._regress(self.pooling(r, every))
        if self._reads_out:
            ratings = self.readout(chunks)
            ratings = ratings.reshape(-1, n_chunks, ratings.shape[1]).mean(1)
            pred = self.readout.combine(pred, ratings)
        return h, pred

    def predict_utterances(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded utterances (U, C, frames, n_mels) with a (U, C) mask of their real chunks →
        A/V/D (U, n_attributes). Padded chunks are dropped before the encoder."""
        return self.forward_utterances(chunks[mask], mask.sum(1)).utterances

    def _regressor_input(self, h: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """What the regressor (through the pooling) sees of each chunk."""
        if self.statistics is None:
            return h
        return torch.cat([h, self.statistics(chunks).to(h.dtype)], dim=1)

    def _regress(self, r: torch.Tensor) -> torch.Tensor:
        """The regressor's outputs, then (with the readout) the residual regressor's, from a
        detached copy of the same input: only the plain outputs train the encoder."""
        out = self.regressor(r)
        if self.readout is None:
            return out
        return torch.cat([out, self.readout.residual(r.detach())], dim=1)

    @property
    def _reads_out(self) -> bool:
        """Whether predictions go through the ridge readout: in eval mode only. In training the
        plain and residual outputs stay apart and the step adds the ridge's ratings per
        utterance, out of fold for the labelled ones (``training/step.py``), so the residual
        outputs learn what they will meet on unseen utterances."""
        return self.readout is not None and not self.training

    def _read_out(self, outputs: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """Per-chunk outputs → (in eval mode, with the readout) the predictions at the mixes."""
        return self.readout.combine(outputs, self.readout(chunks)) if self._reads_out else outputs

    def _aux(self, h: torch.Tensor) -> torch.Tensor | None:
        if self.cluster is not None:
            return self.cluster(h)
        return self.siamese(h) if self.siamese is not None else None

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
    statistics = ChunkStatistics(n_mels) if m.statistics else None
    regressor_in = m.embed_dim + (statistics.dim if statistics is not None else 0)
    regressor = Regressor(regressor_in, m.head_dim, len(m.attributes))
    pooling = AttentionPooling(regressor_in, m.head_dim) if m.pooling == "attention" else None
    readout = (
        RidgeReadout(n_mels, len(m.attributes), regressor_in, m.head_dim)
        if m.ridge_readout
        else None
    )
    return DeepEmoCluster(encoder, cluster, regressor, siamese, pooling, statistics, readout)
