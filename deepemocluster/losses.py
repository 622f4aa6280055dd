"""Training losses: the loss functions, and the interface of a loss term (``LossTerm``) that the
training step sums (``training/objective.py`` builds the list from the config)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of (1 − CCC), computed over the batch; (B, A) inputs."""
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    ccc = 2.0 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)
    return (1.0 - ccc).mean()


def contrastive_loss(distance: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell, Chopra & LeCun (2006), the baseline: mean over pairs of d² for same pairs and
    max(0, margin − d)² for different ones. Every different pair inside the margin is pushed out,
    however far the same pairs already are."""
    same = same.to(distance.dtype)
    push = torch.clamp(margin - distance, min=0.0) ** 2
    return (same * distance**2 + (1.0 - same) * push).mean()


def relative_distance_loss(
    d_same: torch.Tensor, d_diff: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Our reading of Feng & Chaspari's (2020) modified distance loss: only the *relative*
    distance of a same-class pair and a different-class pair counts,

        L = mean_i  d⁺_i / max(d⁺_i + d⁻_i, eps)   ∈ [0, 1],

    over the batch's i-th same pair (d⁺, ``d_same``) and i-th different pair (d⁻, ``d_diff``),
    which the balanced sampler draws in equal numbers. No margin to tune; scaling all embeddings
    by s > 0 leaves L unchanged. Each comparison is bounded on its own, so pushing a few pairs
    far apart buys at most their own terms (a ratio of batch *means* can be driven down by a
    few far-flung embeddings while the rest stay mixed: docs/siamese.md)."""
    if d_same.shape != d_diff.shape or d_same.numel() == 0:
        raise ValueError("relative_distance_loss needs as many same pairs as different pairs")
    return (d_same / torch.clamp(d_same + d_diff, min=eps)).mean()


@dataclass
class StepView:
    """What the loss terms read of one training step: the batch's rows, then (once the network
    has run) its outputs. Utterance rows: the batch's utterances; chunk rows: its chunks."""

    utterances: np.ndarray  # (U,) each utterance's index in the training set
    targets: torch.Tensor  # (U, A) z-scale ratings, NaN where unlabelled
    rated: torch.Tensor  # (U,) bool: labelled
    drawn: torch.Tensor  # (N,) bool: chunks the sampler drew (the others came with their utterance)
    drawn_ids: np.ndarray  # the drawn chunks' ids in the training set
    clusters: torch.Tensor | None  # the drawn chunks' pseudo-labels, or None in this pass
    rng: np.random.Generator  # the step's random draws (the Siamese pairs)
    aux: torch.Tensor | None = None  # (N, ...) the auxiliary head's output per chunk
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # named (U, A) outputs


class LossTerm:
    """One weighted term of the training loss. ``name``: logged as ``train/loss_<name>``;
    ``reads``: which rows of the batch it reads (for the docs and the logs); ``per_chunk``: a
    mean over the drawn chunks of the auxiliary output alone (``chunk_loss``), which a step
    can compute without the utterance outputs."""

    name: str
    reads: str
    per_chunk: bool = False

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def applies(self, view: StepView) -> bool:
        """Whether this batch has the rows the term needs (known before the network runs)."""
        return True

    def __call__(self, view: StepView) -> torch.Tensor | None:
        """The unweighted term, or None when the batch gives it nothing to compare."""
        raise NotImplementedError

    def chunk_loss(self, aux: torch.Tensor, view: StepView, rows: slice) -> torch.Tensor:
        """``per_chunk`` terms: the mean over chunk ``rows`` (all drawn) given their ``aux``."""
        raise NotImplementedError


def labelled_at_least_two(view: StepView) -> bool:
    """A CCC over labelled utterances needs two of them."""
    return int(view.rated.sum()) >= 2
