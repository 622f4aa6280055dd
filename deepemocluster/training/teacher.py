"""Pseudo-ratings for the unlabelled training utterances (``train.teacher_weight``).

The teacher is a ridge on each utterance's mean chunk statistics (``model/statistics.py``), fit
on the labelled Train utterances with the alpha of each attribute chosen on Development
(``deepemocluster.ridge``). The training step then also asks the regressor to agree with it on
the unlabelled chunks (``training/step.py``).

Why: with few labels, a linear model on these statistics predicts valence better than the
network, whose embedding drowns the cue (docs/results.md, "Where the model keeps each
attribute"); rated by the teacher, the unlabelled utterances give the network more to learn
from. With many labels the network outgrows the teacher, which then costs quality: it is off by
default (docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.ridge import fit_ridge

BATCH_CHUNKS = 1024  # chunks read at a time
RATE_UTTERANCES = 8192  # utterances whose statistics are held at once while rating


@dataclass(frozen=True)
class Teacher:
    ratings: torch.Tensor  # (training utterances, attributes): z-scale pseudo-ratings
    dev_ccc: np.ndarray  # (attributes,) the teacher's Development CCC


@torch.inference_mode()
def utterance_means(
    ds: ChunkDataset, utterances: np.ndarray, per_chunk: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """(len(utterances), d): for each of these utterances of ``ds``, the mean over its chunks of
    ``per_chunk`` ((B, frames, n_mels) normalised chunks → (B, d)). Whole utterances are read a
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
    """(len(utterances), 3 × n_mels): each utterance's mean chunk statistics, in the chunks'
    normalised feature scale."""
    return utterance_means(ds, utterances, ChunkStatistics(ds.n_mels))


def statistics_teacher(
    train: ChunkDataset, n_labelled: int, dev: ChunkDataset, dev_targets: np.ndarray
) -> Teacher:
    """Fit on ``train``'s first ``n_labelled`` utterances (their z-scale targets), choose alphas
    on ``dev`` (``dev_targets``: z-scale), rate every ``train`` utterance."""
    labelled = utterance_statistics(train, np.arange(n_labelled))
    ridge = fit_ridge(
        labelled,
        train.targets[:n_labelled].numpy(),
        utterance_statistics(dev, np.arange(len(dev))),
        dev_targets,
    )
    ratings = np.empty((len(train), len(dev_targets[0])))
    ratings[:n_labelled] = ridge.predict(labelled)
    for start in range(n_labelled, len(train), RATE_UTTERANCES):
        rows = np.arange(start, min(start + RATE_UTTERANCES, len(train)))
        ratings[rows] = ridge.predict(utterance_statistics(train, rows))
    return Teacher(torch.from_numpy(ratings).float(), ridge.dev_ccc)
