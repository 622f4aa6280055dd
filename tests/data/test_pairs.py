"""Pair labels (class, or attribute bin) and the balanced pair sampler."""

from __future__ import annotations

import numpy as np
import pytest

from deepemocluster.data.manifest import Utterance
from deepemocluster.data.pairs import CLASS_CODES, NO_LABEL, pair_labels, sample_pairs


def _utt(emo_class: str | None, arousal: float | None = 4.0) -> Utterance:
    return Utterance("u", "u.wav", "Train", arousal, arousal, arousal, emo_class=emo_class)


def test_class_labels_share_one_code_table_and_drop_no_agreement():
    labels = pair_labels([_utt("A"), _utt("N"), _utt("A"), _utt("X"), _utt(None)])
    a, n = CLASS_CODES.index("A"), CLASS_CODES.index("N")
    assert labels.tolist() == [a, n, a, NO_LABEL, NO_LABEL]


def test_bins_when_the_corpus_has_no_classes():
    utts = [_utt(None, a) for a in (1.0, 2.99, 3.0, 4.9, 5.0, 7.0)] + [_utt(None, None)]
    assert pair_labels(utts).tolist() == [0, 0, 1, 1, 2, 2, NO_LABEL]
    assert pair_labels(utts, "bin", edges=[4.0]).tolist() == [0, 0, 0, 1, 1, 1, NO_LABEL]
    with_class = [_utt("H", 6.0), _utt("S", 2.0)]
    assert pair_labels(with_class, "bin").tolist() == [2, 0]


def test_sampler_is_balanced_correct_and_spans_owners():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, NO_LABEL], 6)
    owners = np.arange(24) // 3  # three chunks per utterance
    left, right, same = sample_pairs(labels, 64, rng, owners)
    assert len(left) == 64 and same.sum() == 32
    assert ((labels[left] == labels[right]) == same).all()
    assert (owners[left] != owners[right]).all()
    assert (labels[left] >= 0).all() and (labels[right] >= 0).all()


def test_sampler_is_reproducible_from_its_seed():
    labels = np.random.default_rng(1).integers(0, 4, 40)

    def draw(seed):
        return sample_pairs(labels, 32, np.random.default_rng(seed))

    assert all((a == b).all() for a, b in zip(draw(7), draw(7), strict=True))
    assert not all((a == b).all() for a, b in zip(draw(7), draw(8), strict=True))


@pytest.mark.parametrize(
    "labels, owners",
    [
        ([0, 0, 0, 0], None),  # one class: no different pair
        ([0, 1, 2, 3], None),  # all distinct: no same pair
        ([0, 0, 1, 1], [0, 0, 1, 1]),  # same-class items share an utterance
        ([0, 1, NO_LABEL, NO_LABEL], None),
    ],
)
def test_sampler_declines_when_a_kind_is_impossible(labels, owners):
    assert sample_pairs(np.array(labels), 8, np.random.default_rng(0), owners) is None
