"""One optimisation step of the network: the only place that knows which losses a batch has and
how they mix.

    loss = ce_weight × cross-entropy(cluster logits, pseudo-labels)    every drawn chunk (cluster head)
         + siamese.weight × pair loss(same/different pairs)            drawn labelled chunks (Siamese head)
         + ccc_weight × (1 − CCC(predictions, ratings))                labelled utterances
         + teacher_weight × (1 − CCC(predictions, teacher's ratings))  unlabelled utterances
         + ccc_weight × (1 − CCC(residual + ridge ratings, ratings))   labelled utterances (readout)

The per-chunk terms see the chunks the sampler drew. The CCC sees the batch's utterances: with
``model.pooling=mean`` every drawn chunk is one (the reference's chunk-level CCC); with attention
pooling a drawn labelled chunk brought its whole utterance (``data.samplers.UtteranceBatch``).
The teacher's ratings come from a ridge on chunk statistics (``statistics_ridge.py``). With
``model.ridge_readout`` the residual regressor learns the ratings on top of that ridge's rating
of the whole utterance, for a labelled one from the ridge fit without it; it reads a detached
input, so the other terms train the encoder as they would without it (``model/readout.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from deepemocluster.data.pairs import sample_pairs
from deepemocluster.data.samplers import UtteranceBatch
from deepemocluster.errors import TrainingError
from deepemocluster.losses import ccc_loss, contrastive_loss, relative_distance_loss
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.siamese import pair_distance
from deepemocluster.training.data import TrainingData
from deepemocluster.training.microbatch import SplitStep


@dataclass(frozen=True)
class StepLosses:
    """A step's weighted total and its unweighted terms (``train/loss_ce``, ``train/loss_pair``,
    ``train/loss_ccc``)."""

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
    forward passes in bfloat16 autocast."""

    def __init__(
        self,
        cfg: DictConfig,
        model: DeepEmoCluster,
        net: nn.Module,
        data: TrainingData,
        device: torch.device,
        pair_rng: np.random.Generator,
        distributed: bool,
        amp: bool = False,
    ) -> None:
        self.cfg, self.model, self.data, self.device = cfg, model, data, device
        self.pair_rng, self.distributed = pair_rng, distributed
        self.split = SplitStep(model, net, cfg.train.micro_batch_chunks, device, amp)

    def __call__(
        self, x: torch.Tensor, batch: UtteranceBatch, cluster_labels: np.ndarray | None
    ) -> StepLosses | None:
        """Losses of the batch (gradients accumulated into the parameters), or None when the
        batch has nothing to learn from. ``cluster_labels`` (indexed by chunk id) are the
        pseudo-labels, or None when no cluster head is trained."""
        w = self.cfg.train
        utterances = batch.ids[batch.first_rows] // self.data.train.n_chunks
        y = self.data.train.targets[utterances].to(self.device)
        rated = ~torch.isnan(y[:, 0])
        with_ccc = int(rated.sum()) >= 2
        teacher = self.data.teacher_ratings  # built only when train.teacher_weight > 0
        with_teacher = teacher is not None and int((~rated).sum()) >= 2
        drawn_ids = batch.ids[batch.drawn]
        drawn = torch.from_numpy(batch.drawn).to(self.device)
        if cluster_labels is not None:
            clusters = torch.from_numpy(cluster_labels[drawn_ids]).to(self.device)
            if (
                not (with_ccc or with_teacher)
                and self.model.siamese is None
                and batch.counts is None
            ):
                # the cross-entropy alone is a mean over chunks: one pass per micro-batch
                ce = self.split.per_chunk(
                    x, lambda out, rows: F.cross_entropy(out[0], clusters[rows]), w.ce_weight
                ).item()
                return StepLosses(w.ce_weight * ce, {"train/loss_ce": ce})
        aux, pred = self.split.forward(x, batch.counts)
        residual = None
        if (readout := self.data.readout_ratings) is not None:  # model/readout.py
            pred, residual = pred.chunk(2, dim=1)
            residual = residual + readout[utterances].to(self.device)
        loss, terms = torch.zeros((), device=self.device), {}
        if cluster_labels is not None:
            ce = F.cross_entropy(aux[drawn], clusters)
            loss = loss + w.ce_weight * ce
            terms["train/loss_ce"] = ce.item()
        siamese = self.model.siamese is not None
        if siamese and (lp := self._pair_loss(aux[drawn], drawn_ids)) is not None:
            loss = loss + self.cfg.siamese.weight * lp
            terms["train/loss_pair"] = lp.item()
        if with_ccc:
            lc = ccc_loss(pred[rated], y[rated])
            loss = loss + w.ccc_weight * lc
            terms["train/loss_ccc"] = lc.item()
            if residual is not None:  # detached from the encoder: it trains its own head only
                lr = ccc_loss(residual[rated], y[rated])
                loss = loss + w.ccc_weight * lr
                terms["train/loss_readout"] = lr.item()
        if with_teacher:
            pseudo = teacher[utterances].to(self.device)
            lt = ccc_loss(pred[~rated], pseudo[~rated])
            loss = loss + w.teacher_weight * lt
            terms["train/loss_teacher"] = lt.item()
        if not loss.requires_grad:
            if not self.distributed:
                return None
            loss = pred.sum() * 0.0  # under DDP every rank must join every step's all-reduce
        self.split.backward(loss)
        return StepLosses(loss.item(), terms)

    def _pair_loss(self, z: torch.Tensor, ids: np.ndarray) -> torch.Tensor | None:
        """Pair loss over balanced same/different pairs of the batch's drawn labelled chunks
        (each pair spans two utterances); None when the batch allows no pair of one kind."""
        s = self.cfg.siamese
        utterances = ids // self.data.train.n_chunks
        pairs = sample_pairs(
            self.data.pair_labels[utterances], s.pairs_per_batch, self.pair_rng, owners=utterances
        )
        if pairs is None:
            return None
        left, right, same = pairs
        distance = pair_distance(z[left], z[right], s.distance)
        same = torch.from_numpy(same).to(self.device)
        if s.loss == "contrastive":
            return contrastive_loss(distance, same, s.margin)
        return relative_distance_loss(distance[same], distance[~same])
