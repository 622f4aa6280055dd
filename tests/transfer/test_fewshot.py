"""Prototype and k-NN classification in embedding space, and their scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.transfer.fewshot import (
    knn_predict,
    macro_f1,
    prototype_predict,
    score_embeddings,
)

SUPPORT = torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0], [4.0, 1.0]])
LABELS = np.array([3, 3, 7, 7, 7])


def test_prototype_uses_class_means():
    # class 7's mean is (8, 1); the query at (3.5, 1) is nearer class 3's mean (0, 1)
    query = torch.tensor([[3.5, 1.0], [6.0, 1.0]])
    assert prototype_predict(SUPPORT, LABELS, query, "euclidean").tolist() == [3, 7]


def test_knn_votes_and_breaks_ties_by_the_nearest_neighbour():
    query = torch.tensor([[3.5, 1.0]])
    assert knn_predict(SUPPORT, LABELS, query, "euclidean", k=1).tolist() == [7]  # (4, 1)
    assert knn_predict(SUPPORT, LABELS, query, "euclidean", k=3).tolist() == [3]  # 3, 3, 7
    # k=2: one vote each; the nearest neighbour (4, 1) is class 7
    assert knn_predict(SUPPORT, LABELS, query, "euclidean", k=2).tolist() == [7]
    assert knn_predict(SUPPORT, LABELS, query, "euclidean", k=99).tolist() == [7]  # 3 vs 2


def test_macro_f1_by_hand():
    truth, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    # class 0: P 1, R 0.5 → F1 2/3; class 1: P 2/3, R 1 → F1 0.8
    assert macro_f1(truth, predicted) == pytest.approx((2 / 3 + 0.8) / 2)
    assert macro_f1(truth, np.array([2, 2, 2, 2])) == 0.0


def test_score_embeddings_reports_both_classifiers():
    report = score_embeddings(SUPPORT, LABELS, SUPPORT, LABELS, "cosine", k=1)
    assert set(report) == {"proto_accuracy", "proto_macro_f1", "knn_accuracy", "knn_macro_f1"}
    assert report["knn_accuracy"] == 1.0  # every support point is its own nearest neighbour
