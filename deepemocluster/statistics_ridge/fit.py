"""A ridge on each utterance's mean chunk statistics, fit on the labelled Train utterances.

Why: with few labels, a linear model on these statistics predicts valence better than the
network, whose 256-d embedding drowns the cue (docs/results.md, "Where the model keeps each
attribute"). One fit serves two uses:

- the ridge readout (``model.ridge_readout``, ``readout.py``): a residual regressor learns what
  its ratings miss (in training, from out-of-fold ratings);
- the statistics teacher (``train.teacher_weight``, ``terms.py``): its ratings of the
  unlabelled utterances are pseudo-ratings the regressor is asked to agree with.

The statistics are the ones the regressor reads (``model/statistics.py``); each attribute's alpha
is chosen on Development (``ridge.py``, the quality benchmark's baseline rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.statistics_ridge.ridge import Ridge, fit_ridge

BATCH_CHUNKS = 1024  # chunks read at a time
FOLDS = 5  # folds of the labelled utterances for the readout's out-of-fold ratings
RATE_UTTERANCES = 8192  # utterances whose statistics are held at once while rating


@torch.inference_mode()
def utterance_means(
    ds: ChunkDataset, utterances: np.ndarray, per_chunk: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """(len(utterances), d): for each of these utterances of ``ds``, the mean over its chunks of
    ``per_chunk`` ((B, frames, F) normalised chunks → (B, d)). Whole utterances are read a
    batch at a time, so memory follows the batch, not the corpus."""
    per_batch = max(1, BATCH_CHUNKS // ds.n_chunks)
    out = None
    for start in range(0, len(utterances), per_batch):
        batch = np.asarray(utterances[start : start + per_batch])
        ids = (batch[:, None] * ds.n_chunks + np.arange(ds.n_chunks)).ravel()
        values = per_chunk(ds.chunk_batch(ids)[0]).double().numpy()
        if out is None:  # the width is known once the first batch is out
            out = np.empty((len(utterances), values.shape[1]))
        out[start : start + len(batch)] = values.reshape(len(batch), ds.n_chunks, -1).mean(1)
    return out


def utterance_statistics(ds: ChunkDataset, utterances: np.ndarray) -> np.ndarray:
    """(len(utterances), 3 × F): each utterance's mean chunk statistics, in the chunks'
    normalised feature scale."""
    return utterance_means(ds, utterances, ChunkStatistics(ds.feature_dim))


@dataclass(frozen=True)
class StatisticsRidge:
    """The ridge fit on every labelled utterance, its ratings of them and, for the readout,
    each labelled utterance's rating by the ridge fit without it."""

    ridge: Ridge
    in_sample: torch.Tensor  # (n_labelled, attributes) z-scale ratings
    out_of_fold: torch.Tensor | None  # the same out of fold, or None


def fit_statistics_ridge(
    train: ChunkDataset,
    n_labelled: int,
    dev: ChunkDataset,
    dev_targets: np.ndarray,
    out_of_fold: bool = False,
) -> StatisticsRidge:
    """Fit on ``train``'s first ``n_labelled`` utterances (their z-scale targets); choose each
    attribute's alpha on ``dev`` (``dev_targets``: z-scale). With ``out_of_fold``, also fit it
    once per fold of the labelled utterances (every ``FOLDS``-th utterance held out) and rate
    the held-out ones.

    Why the folds: a ridge rates its own training utterances far better than unseen ones, so a
    network trained on top of those ratings would see residuals near zero and learn little
    (docs/decisions.md). Out of fold, a labelled utterance is rated as a Test one would be.
    """
    x = utterance_statistics(train, np.arange(n_labelled))
    y = train.targets[:n_labelled].numpy()
    x_dev = utterance_statistics(dev, np.arange(len(dev)))
    ridge = fit_ridge(x, y, x_dev, dev_targets)
    in_sample = torch.from_numpy(ridge.predict(x)).float()
    if not out_of_fold:
        return StatisticsRidge(ridge, in_sample, None)
    fold = np.arange(n_labelled) % min(FOLDS, n_labelled)
    ratings = np.empty_like(y)
    for f in np.unique(fold):
        held = fold == f
        ratings[held] = fit_ridge(x[~held], y[~held], x_dev, dev_targets).predict(x[held])
    return StatisticsRidge(ridge, in_sample, torch.from_numpy(ratings).float())


def statistics_ratings(ds: ChunkDataset, ridge: Ridge, first: int = 0) -> torch.Tensor:
    """(len(ds) − first, attributes): ``ridge``'s z-scale ratings of the utterances of ``ds``
    from ``first`` on (the labelled ones come rated from the fit)."""
    ratings = np.empty((len(ds) - first, len(ridge.intercept)))
    for start in range(first, len(ds), RATE_UTTERANCES):
        rows = np.arange(start, min(start + RATE_UTTERANCES, len(ds)))
        ratings[rows - first] = ridge.predict(utterance_statistics(ds, rows))
    return torch.from_numpy(ratings).float()
