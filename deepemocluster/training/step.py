"""One optimisation step of the network: the batch's rows in, the loss terms summed
(``objective.py`` says which terms a run has and what each reads), gradients out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepemocluster.data.samplers import UtteranceBatch
from deepemocluster.errors import TrainingError
from deepemocluster.losses import LossTerm, StepView
from deepemocluster.model import DeepEmoCluster
from deepemocluster.training.data import TrainingData
from deepemocluster.training.microbatch import SplitStep


@dataclass(frozen=True)
class StepLosses:
    """A step's weighted total and its unweighted terms (``train/loss_<name>``)."""

    total: float
    terms: dict[str, float]

    def check_finite(self, where: str) -> None:
        """Stop before the optimisers step on a NaN/Inf loss, naming every term."""
        if not math.isfinite(self.total):
            raise TrainingError(
                f"loss is {self.total} at {where} ("
                + ", ".join(f"{k.removeprefix('train/')} {v}" for k, v in self.terms.items())
                + ")"
            )


class TrainingStep:
    """Forward and backward of one batch of chunk ids (optimiser steps are the trainer's).

    ``net`` is ``model`` or its DDP wrapper; ``pair_rng`` draws the Siamese pairs; ``amp``: the
    forward passes in bfloat16 autocast; ``terms``: the loss, in summation order."""

    def __init__(
        self,
        model: DeepEmoCluster,
        net: nn.Module,
        data: TrainingData,
        device: torch.device,
        pair_rng: np.random.Generator,
        distributed: bool,
        terms: Sequence[LossTerm],
        micro_batch_chunks: int = 0,
        amp: bool = False,
    ) -> None:
        self.data, self.device, self.terms = data, device, list(terms)
        self.pair_rng, self.distributed = pair_rng, distributed
        self.split = SplitStep(model, net, micro_batch_chunks, device, amp)

    def __call__(
        self, x: torch.Tensor, batch: UtteranceBatch, cluster_labels: np.ndarray | None
    ) -> StepLosses | None:
        """Losses of the batch (gradients accumulated into the parameters), or None when the
        batch has nothing to learn from. ``cluster_labels`` (indexed by chunk id) are the
        pseudo-labels, or None when no cluster head is trained in this pass."""
        view = self._view(batch, cluster_labels)
        terms = [t for t in self.terms if t.applies(view)]
        if len(terms) == 1 and terms[0].per_chunk and batch.counts is None:
            # a mean over chunks alone: one pass per micro-batch
            return self._per_chunk(x, view, terms[0])
        view.aux, view.outputs = self.split.forward(x, batch.counts)
        loss, logged = torch.zeros((), device=self.device), {}
        for term in terms:
            if (value := term(view)) is not None:
                loss = loss + term.weight * value
                logged[f"train/loss_{term.name}"] = value.item()
        if not loss.requires_grad:
            if not self.distributed:
                return None
            # under DDP every rank must join every step's all-reduce
            loss = view.outputs["plain"].sum() * 0.0
        self.split.backward(loss)
        return StepLosses(loss.item(), logged)

    def _view(self, batch: UtteranceBatch, cluster_labels: np.ndarray | None) -> StepView:
        utterances = batch.ids[batch.first_rows] // self.data.train.n_chunks
        targets = self.data.train.targets[utterances].to(self.device)
        drawn_ids = batch.ids[batch.drawn]
        clusters = None
        if cluster_labels is not None:
            clusters = torch.from_numpy(cluster_labels[drawn_ids]).to(self.device)
        return StepView(
            utterances=utterances,
            targets=targets,
            rated=~torch.isnan(targets[:, 0]),
            drawn=torch.from_numpy(batch.drawn).to(self.device),
            drawn_ids=drawn_ids,
            clusters=clusters,
            rng=self.pair_rng,
        )

    def _per_chunk(self, x: torch.Tensor, view: StepView, term: LossTerm) -> StepLosses:
        value = self.split.per_chunk(
            x, lambda out, rows: term.chunk_loss(out[0], view, rows), term.weight
        ).item()
        return StepLosses(term.weight * value, {f"train/loss_{term.name}": value})
