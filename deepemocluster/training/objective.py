"""The training loss as a list of terms, built once from the config; the step sums them.

    loss = Σ weight × term, in this order:
      ce      ce_weight × cross-entropy(cluster logits, pseudo-labels)  drawn chunks (cluster head)
      pair    siamese.weight × pair loss(same/different pairs)         drawn labelled chunks (Siamese)
      ccc     ccc_weight × (1 − CCC(plain predictions, ratings))        labelled utterances
      ...     the terms a model extension adds (``extensions.py``)

The per-chunk terms see the chunks the sampler drew. The CCC sees the batch's utterances: with
``model.pooling=mean`` every drawn chunk is one (the reference's chunk-level CCC); with attention
pooling a drawn labelled chunk brought its whole utterance (``data.samplers.UtteranceBatch``).
Adding a term is a class here (or in its extension) and a line in ``build_terms``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from deepemocluster.data.pairs import sample_pairs
from deepemocluster.losses import (
    LossTerm,
    StepView,
    ccc_loss,
    contrastive_loss,
    labelled_at_least_two,
    relative_distance_loss,
)
from deepemocluster.model.siamese import pair_distance


class ClusterCrossEntropy(LossTerm):
    name, reads, per_chunk = "ce", "drawn chunks, against their pseudo-labels", True

    def applies(self, view: StepView) -> bool:
        return view.clusters is not None

    def __call__(self, view: StepView) -> torch.Tensor:
        return F.cross_entropy(view.aux[view.drawn], view.clusters)

    def chunk_loss(self, aux: torch.Tensor, view: StepView, rows: slice) -> torch.Tensor:
        return F.cross_entropy(aux, view.clusters[rows])


class PairLoss(LossTerm):
    """Pair loss over balanced same/different pairs of the batch's drawn labelled chunks (each
    pair spans two utterances)."""

    name, reads = "pair", "drawn labelled chunks, in same/different pairs"

    def __init__(self, siamese: DictConfig, pair_labels: np.ndarray, n_chunks: int) -> None:
        super().__init__(siamese.weight)
        self.siamese, self.pair_labels, self.n_chunks = siamese, pair_labels, n_chunks

    def __call__(self, view: StepView) -> torch.Tensor | None:
        s = self.siamese
        utterances = view.drawn_ids // self.n_chunks
        pairs = sample_pairs(
            self.pair_labels[utterances], s.pairs_per_batch, view.rng, owners=utterances
        )
        if pairs is None:  # the batch allows no pair of one kind
            return None
        left, right, same = pairs
        z = view.aux[view.drawn]
        distance = pair_distance(z[left], z[right], s.distance)
        same = torch.from_numpy(same).to(distance.device)
        if s.loss == "contrastive":
            return contrastive_loss(distance, same, s.margin)
        return relative_distance_loss(distance[same], distance[~same])


class RatingCCC(LossTerm):
    name, reads = "ccc", "labelled utterances: the regressor's plain predictions"
    applies = staticmethod(labelled_at_least_two)

    def __call__(self, view: StepView) -> torch.Tensor:
        return ccc_loss(view.outputs["plain"][view.rated], view.targets[view.rated])


def build_terms(cfg: DictConfig, data, extra: Sequence[LossTerm] = ()) -> list[LossTerm]:
    """The run's loss terms, in summation order: the heads' and the regressor's, then
    ``extra`` (the extensions'). ``data``: the run's ``TrainingData``."""
    m, w = cfg.model, cfg.train
    terms: list[LossTerm] = []
    if m.aux_head == "cluster":
        terms.append(ClusterCrossEntropy(w.ce_weight))
    if m.aux_head == "siamese":
        terms.append(PairLoss(cfg.siamese, data.pair_labels, data.train.n_chunks))
    return [*terms, RatingCCC(w.ccc_weight), *extra]
