"""The statistics ridge's loss terms, summed after the regressor's CCC (``training/objective.py``).

    readout  ccc_weight × (1 − CCC(residual + ridge ratings, ratings))      labelled utterances
    teacher  teacher_weight × (1 − CCC(plain predictions, ridge ratings))   unlabelled utterances

The readout's residual regressor reads a detached input, so its term trains that head only and
the other terms train the encoder as they would without it (``readout.py``). Its ridge ratings of
a labelled utterance come from the ridge fit without that utterance (``fit.py``).
"""

from __future__ import annotations

import torch

from deepemocluster.losses import LossTerm, StepView, ccc_loss, labelled_at_least_two


class ReadoutCCC(LossTerm):
    name, reads = "readout", "labelled utterances: residual + out-of-fold ridge ratings"
    applies = staticmethod(labelled_at_least_two)

    def __init__(self, weight: float, ratings: torch.Tensor) -> None:
        super().__init__(weight)
        self.ratings = ratings  # (training utterances, A) z-scale

    def __call__(self, view: StepView) -> torch.Tensor:
        read_out = view.outputs["residual"] + self.ratings[view.utterances].to(view.rated.device)
        return ccc_loss(read_out[view.rated], view.targets[view.rated])


class TeacherCCC(LossTerm):
    name, reads = "teacher", "unlabelled utterances: plain predictions against ridge ratings"

    def __init__(self, weight: float, ratings: torch.Tensor) -> None:
        super().__init__(weight)
        self.ratings = ratings  # (training utterances, A) z-scale pseudo-ratings

    def applies(self, view: StepView) -> bool:
        return int((~view.rated).sum()) >= 2

    def __call__(self, view: StepView) -> torch.Tensor:
        pseudo = self.ratings[view.utterances].to(view.rated.device)
        return ccc_loss(view.outputs["plain"][~view.rated], pseudo[~view.rated])
