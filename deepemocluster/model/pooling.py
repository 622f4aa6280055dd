"""From chunks to utterances (``model.pooling``): how an utterance's chunk sequence becomes one
A/V/D prediction.

- ``mean``: the regressor predicts every chunk and the utterance gets the mean of its chunks'
  predictions (the reference's rule). Each prediction sees one ~1 s chunk, so a cue spread over
  the turn, such as how far the pitch moves from chunk to chunk, is out of its reach.
- ``attention``: the chunk embeddings are pooled with learned softmax weights and the regressor
  predicts once from the pooled vector (Lin & Busso's chunk-level attention; docs/decisions.md).

Utterances may have different numbers of chunks. A batch holds its chunks flat, utterance after
utterance, with a count per utterance; ``pad`` lays them out as (U, C, ...) with a mask. Padded
slots are zeroed before anything reads them, so what fills them never changes an output.
"""

from __future__ import annotations

import torch
from torch import nn


def check_counts(counts: torch.Tensor, n_chunks: int) -> None:
    """Chunks per utterance must be ≥ 1 each and add up to the ``n_chunks`` chunks given."""
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError(f"chunk counts must be a non-empty 1-d tensor, got shape {counts.shape}")
    if int(counts.min()) < 1:
        raise ValueError(f"every utterance needs at least one chunk, got counts {counts.tolist()}")
    if int(counts.sum()) != n_chunks:
        raise ValueError(f"chunk counts add up to {int(counts.sum())}, but {n_chunks} chunks given")


def chunk_mask(counts: torch.Tensor, max_chunks: int | None = None) -> torch.Tensor:
    """(U, C) bool: True where utterance u has a chunk c, i.e. c < counts[u]."""
    width = int(counts.max()) if max_chunks is None else max_chunks
    return torch.arange(width, device=counts.device) < counts[:, None]


def pad(flat: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-chunk rows (N, ...) → zero-padded (U, C_max, ...) and its (U, C_max) mask."""
    check_counts(counts, len(flat))
    mask = chunk_mask(counts.to(flat.device))
    padded = flat.new_zeros((*mask.shape, *flat.shape[1:]))
    padded[mask] = flat
    return padded, mask


def mean_over_chunks(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(U, C, A) → (U, A): the mean over each utterance's real chunks. Summed chunk by chunk in
    order, as numpy sums an axis, so it equals ``np.mean`` over equal counts to the last bit."""
    x = padded.masked_fill(~mask[..., None], 0.0)
    total = x[:, 0]
    for c in range(1, x.shape[1]):
        total = total + x[:, c]
    return total / mask.sum(1, keepdim=True).to(total.dtype)


class AttentionPooling(nn.Module):
    """Softmax-weighted mean of an utterance's chunk embeddings; the score of a chunk is a small
    MLP of its embedding (Linear → tanh → Linear). Over a single chunk it is the identity, so a
    one-chunk utterance's pooled vector is its chunk embedding."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(U, C, d), (U, C) → (U, C) attention weights, 0 on padding, each row summing to 1."""
        h = h.masked_fill(~mask[..., None], 0.0)
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(U, C, d) chunk embeddings, (U, C) mask → (U, d) pooled utterance embeddings."""
        weights = self.weights(h, mask)
        return torch.einsum("uc,ucd->ud", weights, h.masked_fill(~mask[..., None], 0.0))
