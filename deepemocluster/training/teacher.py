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

from dataclasses import dataclass

import numpy as np
import torch

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.ridge import fit_ridge

BATCH_CHUNKS = 1024  # chunks read at a time: the statistics need no network


@dataclass(frozen=True)
class Teacher:
    ratings: torch.Tensor  # (training utterances, attributes): z-scale pseudo-ratings
    dev_ccc: np.ndarray  # (attributes,) the teacher's Development CCC


@torch.inference_mode()
def utterance_statistics(ds: ChunkDataset, n: int | None = None) -> np.ndarray:
    """(n, 3 × n_mels): for each of the first ``n`` utterances of ``ds`` (default: all), the
    mean over its chunks of their statistics, in the chunks' normalised feature scale."""
    n = len(ds) if n is None else n
    statistics = ChunkStatistics(ds.n_mels)
    ids = np.arange(n * ds.n_chunks)
    out = np.empty((len(ids), statistics.dim), dtype=np.float64)
    for start in range(0, len(ids), BATCH_CHUNKS):
        batch = ids[start : start + BATCH_CHUNKS]
        out[start : start + len(batch)] = statistics(ds.chunk_batch(batch)[0]).numpy()
    return out.reshape(n, ds.n_chunks, -1).mean(axis=1)


def statistics_teacher(
    train: ChunkDataset, n_labelled: int, dev: ChunkDataset, dev_targets: np.ndarray
) -> Teacher:
    """Fit on ``train``'s first ``n_labelled`` utterances (their z-scale targets), choose alphas
    on ``dev`` (``dev_targets``: z-scale), rate every ``train`` utterance."""
    x = utterance_statistics(train)
    y = train.targets[:n_labelled].numpy()
    ridge = fit_ridge(x[:n_labelled], y, utterance_statistics(dev), dev_targets)
    return Teacher(torch.from_numpy(ridge.predict(x)).float(), ridge.dev_ccc)
