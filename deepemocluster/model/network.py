"""The whole model: front-end → (auxiliary head: cluster classifier or Siamese projection, regressor).

The auxiliary heads always work per chunk (pseudo-labels and pairs are per chunk, as in the
reference); the regressor works per utterance through ``model.pooling`` (``pooling.py``).

One forward path serves training, evaluation and the ONNX graph, in train and eval mode alike.
Its rating outputs are named, per utterance: ``plain`` (the regressor's) and ``prediction``
(what the model predicts). A variant that adds outputs of its own subclasses this module and
overrides the three steps of ``_ratings``: ``_rate`` (outputs from the regressor's input rows),
``_chunk_terms`` (outputs of each chunk's own features, averaged over the utterance) and
``_finish`` (the prediction, and any output made of the others).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from deepemocluster.model.frontend import FrontEnd
from deepemocluster.model.heads import ClusterHead, Regressor
from deepemocluster.model.pooling import AttentionPooling, mean_over_chunks, pad
from deepemocluster.model.siamese import SiameseHead
from deepemocluster.model.statistics import ChunkStatistics

Ratings = dict[str, torch.Tensor]  # named (rows, n_attributes) outputs


class UtteranceOutputs(NamedTuple):
    """One pass over the chunks of whole utterances. ``chunks``: the named outputs per chunk
    (N rows), only with mean pooling (where they are what the utterance averages), else None;
    ``utterances``: the named outputs per utterance (U rows)."""

    aux: torch.Tensor | None
    chunks: Ratings | None
    utterances: Ratings

    @property
    def prediction(self) -> torch.Tensor:
        """(U, n_attributes): the model's prediction of each utterance."""
        return self.utterances["prediction"]


class DeepEmoCluster(nn.Module):
    """At most one auxiliary head (``cluster`` or ``siamese``) beside the A/V/D regressor. The
    front-end is kept as ``encoder`` (the name its weights have in every checkpoint)."""

    def __init__(
        self,
        frontend: FrontEnd,
        cluster: ClusterHead | None,
        regressor: Regressor,
        siamese: SiameseHead | None = None,
        pooling: AttentionPooling | None = None,
        statistics: ChunkStatistics | None = None,
    ) -> None:
        super().__init__()
        if cluster is not None and siamese is not None:
            raise ValueError("one auxiliary head at a time: cluster or siamese")
        self.encoder = frontend
        self.cluster = cluster
        self.regressor = regressor
        self.siamese = siamese
        # None: mean of chunk predictions (and a state_dict without pooling keys, as before it)
        self.pooling = pooling
        # None: the regressor sees the chunk embedding alone (as the reference)
        self.statistics = statistics
        self.frozen_blocks = 0

    def forward(
        self, chunks: torch.Tensor, counts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, Ratings]:
        """(N, frames, feature_dim) chunks, utterance after utterance, ``counts`` (U,) chunks
        each → (auxiliary output per chunk: cluster logits, Siamese embeddings or None; named
        A/V/D outputs per utterance). Without ``counts`` every chunk is an utterance of its own."""
        if counts is None:
            counts = torch.ones(len(chunks), dtype=torch.long, device=chunks.device)
        out = self.forward_utterances(chunks, counts)
        return out.aux, out.utterances

    def forward_utterances(self, chunks: torch.Tensor, counts: torch.Tensor) -> UtteranceOutputs:
        """Chunks of whole utterances, flat (N, frames, feature_dim), utterance after utterance,
        with ``counts`` (U,) chunks each. Only real chunks go through the front-end, so padding
        never enters BatchNorm statistics."""
        h = self.encoder(chunks)
        return self._outputs(h, chunks, lambda rows: pad(rows, counts))

    def equal_utterances(
        self, chunks: torch.Tensor, n_chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Utterances of exactly ``n_chunks`` chunks each, flat (U × n_chunks, frames,
        feature_dim) → (front-end output per chunk, A/V/D prediction per utterance). Reshapes
        only, no padding: the form the ONNX graph exports (``serving/export.py``)."""

        def group(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            grouped = rows.reshape(-1, n_chunks, *rows.shape[1:])
            return grouped, torch.ones(grouped.shape[:2], dtype=torch.bool, device=rows.device)

        h = self.encoder(chunks)
        return h, self._outputs(h, chunks, group).prediction

    def predict_utterances(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded utterances (U, C, frames, feature_dim) with a (U, C) mask of their real chunks
        → A/V/D (U, n_attributes). Padded chunks are dropped before the front-end."""
        return self.forward_utterances(chunks[mask], mask.sum(1)).prediction

    def _outputs(self, h: torch.Tensor, chunks: torch.Tensor, group) -> UtteranceOutputs:
        """The outputs from the front-end's chunk embeddings ``h``; ``group`` lays flat per-chunk
        rows out per utterance: (U, C, ...) and its (U, C) mask."""
        aux, r = self._aux(h), self._regressor_input(h, chunks)
        if self.pooling is None:
            per_chunk = self._ratings(self._rate(r), self._chunk_terms(chunks))
            per_utterance = {k: mean_over_chunks(*group(v)) for k, v in per_chunk.items()}
            return UtteranceOutputs(aux, per_chunk, per_utterance)
        terms = {k: mean_over_chunks(*group(v)) for k, v in self._chunk_terms(chunks).items()}
        return UtteranceOutputs(
            aux, None, self._ratings(self._rate(self.pooling(*group(r))), terms)
        )

    def _ratings(self, rated: Ratings, terms: Ratings) -> Ratings:
        outputs = rated | terms
        return outputs | self._finish(outputs)

    def _rate(self, r: torch.Tensor) -> Ratings:
        """Named outputs of regressor-input rows (chunks, or pooled utterances)."""
        return {"plain": self.regressor(r)}

    def _chunk_terms(self, chunks: torch.Tensor) -> Ratings:
        """Named outputs of each chunk's own features, which an utterance averages."""
        return {}

    def _finish(self, outputs: Ratings) -> Ratings:
        """The ``prediction`` (and any output made of the others) from the named outputs of
        the same rows."""
        return {"prediction": outputs["plain"]}

    def _regressor_input(self, h: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """What the regressor (through the pooling) sees of each chunk."""
        if self.statistics is None:
            return h
        return torch.cat([h, self.statistics(chunks).to(h.dtype)], dim=1)

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
        """Freeze the front-end's first ``n`` blocks (fine-tuning): no gradients, and their
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
