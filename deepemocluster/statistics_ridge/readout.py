"""The ridge readout (``model.ridge_readout``): a fixed ridge from each chunk's statistics to
A/V/D, a residual regressor that learns what the ridge misses, and how much of that each
attribute's prediction takes.

Why: with few labels the network's 256-d embedding drowns the valence cue that the statistics
carry, while a ridge on the same statistics, with its regularisation chosen on Development,
keeps it (docs/results.md). The ridge is fit in closed form before the first epoch (``fit.py``);
it is linear, so the mean of its chunk ratings is its rating of the utterance's mean statistics.

With many labels the network alone beats the ridge, and a network trained only on top of the
ridge learns little (docs/decisions.md). So the regressor keeps its plain output and trains the
encoder as without the readout, while the residual regressor reads a detached copy of the same
input; each attribute's prediction is ``(1 − mix) × plain + mix × read_out``, ``read_out`` being
``residual + ridge``, with the mix chosen from ``MIXES`` on Development at every evaluation
(``choose_mixes``, through the extension's ``on_evaluate``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepemocluster.metrics import ccc
from deepemocluster.model.heads import Regressor
from deepemocluster.model.network import DeepEmoCluster, Ratings
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.statistics_ridge.ridge import Ridge

# the mixes Development chooses from: the plain prediction, the two averaged, the readout's
MIXES = (0.0, 0.5, 1.0)


class RidgeReadout(nn.Module):
    """(B, frames, F) normalised chunks → (B, n_outputs) ridge ratings (zero until
    ``load_ridge``); ``residual``: the regressor of what the ridge misses."""

    def __init__(self, feature_dim: int, n_outputs: int, regressor_in: int, hidden: int) -> None:
        super().__init__()
        self.statistics = ChunkStatistics(feature_dim)
        self.residual = Regressor(regressor_in, hidden, n_outputs)
        # buffers, not parameters: no optimiser moves them, and they travel in the state_dict
        # (checkpoints, the MLflow model, the ONNX graph)
        self.register_buffer("weight", torch.zeros(self.statistics.dim, n_outputs))
        self.register_buffer("bias", torch.zeros(n_outputs))
        self.register_buffer("mix", torch.ones(n_outputs))

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        # a product and a sum, not a matmul: autocast leaves them in float32, so a bfloat16 run
        # adds the ridge's ratings at full precision
        return (self.statistics(chunks)[:, :, None] * self.weight).sum(1) + self.bias

    @torch.no_grad()
    def load_ridge(self, ridge: Ridge) -> None:
        """Take ``ridge`` (fit on standardised mean statistics) with its standardisation folded
        into the weights."""
        weight = ridge.weights / ridge.std[:, None]
        self.weight.copy_(torch.from_numpy(weight))
        self.bias.copy_(torch.from_numpy(ridge.intercept - ridge.mean @ weight))


class ReadoutModel(DeepEmoCluster):
    """The network with the readout beside its regressor. Its named outputs add ``residual``
    (from a detached copy of the regressor's input: only ``plain`` trains the encoder),
    ``ridge`` (the fixed ridge's rating) and ``read_out`` (their sum); ``prediction`` mixes
    ``plain`` and ``read_out`` per attribute."""

    def __init__(self, *parts: nn.Module | None, readout: RidgeReadout) -> None:
        super().__init__(*parts)
        self.readout = readout

    def _rate(self, r: torch.Tensor) -> Ratings:
        return super()._rate(r) | {"residual": self.readout.residual(r.detach())}

    def _chunk_terms(self, chunks: torch.Tensor) -> Ratings:
        return {"ridge": self.readout(chunks)}

    def _finish(self, outputs: Ratings) -> Ratings:
        read_out = outputs["residual"] + outputs["ridge"]
        mix = self.readout.mix
        return {"read_out": read_out, "prediction": (1 - mix) * outputs["plain"] + mix * read_out}


def choose_mixes(
    ratings: np.ndarray, plain: np.ndarray, read_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each attribute's (column's) mix from ``MIXES`` whose prediction has the highest CCC with
    ``ratings``, the first on a tie, and that CCC; ``plain`` and ``read_out`` are the predictions
    at mix 0 and 1."""
    mixes, scores = np.empty(ratings.shape[1]), np.empty(ratings.shape[1])
    for j in range(ratings.shape[1]):
        by_mix = [ccc(ratings[:, j], (1 - m) * plain[:, j] + m * read_out[:, j]) for m in MIXES]
        best = int(np.argmax(by_mix))
        mixes[j], scores[j] = MIXES[best], by_mix[best]
    return mixes, scores
