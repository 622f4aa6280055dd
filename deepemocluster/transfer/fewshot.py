"""Few-shot classification in the Siamese embedding space, the measure of a transferred encoder:
nearest class prototype and k-NN vote over a labelled support set, scored by accuracy and
macro-F1. An utterance is embedded as the mean of its chunk embeddings, as its prediction is the
mean of its chunk predictions."""

from __future__ import annotations

import numpy as np
import torch

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.siamese import pair_distance
from deepemocluster.serving.inference import embed_chunks


def embed_utterances(
    model: DeepEmoCluster, ds: ChunkDataset, batch_chunks: int, device: torch.device
) -> torch.Tensor:
    """(n_utterances, d) mean chunk embeddings, eval mode."""
    chunks = embed_chunks(model, ds, batch_chunks, device)
    return torch.from_numpy(chunks.reshape(len(ds), ds.n_chunks, -1).mean(axis=1))


def prototype_predict(
    support: torch.Tensor, support_labels: np.ndarray, query: torch.Tensor, metric: str
) -> np.ndarray:
    """Label of the nearest class prototype (mean support embedding of the class)."""
    classes = np.unique(support_labels)
    prototypes = torch.stack(
        [support[torch.from_numpy(support_labels == c)].mean(0) for c in classes]
    )
    distance = pair_distance(query[:, None, :], prototypes[None, :, :], metric)
    return classes[distance.argmin(1).numpy()]


def knn_predict(
    support: torch.Tensor, support_labels: np.ndarray, query: torch.Tensor, metric: str, k: int
) -> np.ndarray:
    """Majority label of the k nearest support embeddings; a tie goes to the tied label that
    holds the nearest neighbour."""
    distance = pair_distance(query[:, None, :], support[None, :, :], metric)
    nearest = distance.argsort(1)[:, : min(k, len(support))].numpy()
    votes = support_labels[nearest]  # (n_query, k), nearest first
    predictions = []
    for row in votes:
        counts = {label: int((row == label).sum()) for label in row}
        best = max(counts.values())
        predictions.append(next(label for label in row if counts[label] == best))
    return np.array(predictions, dtype=support_labels.dtype)


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(truth == predicted))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean F1 over every label that occurs in ``truth`` or ``predicted``."""
    scores = []
    for label in np.union1d(truth, predicted):
        tp = np.sum((truth == label) & (predicted == label))
        fp, fn = (
            np.sum((truth != label) & (predicted == label)),
            np.sum((truth == label) & (predicted != label)),
        )
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def score_embeddings(
    support: torch.Tensor,
    support_labels: np.ndarray,
    query: torch.Tensor,
    query_labels: np.ndarray,
    metric: str,
    k: int,
) -> dict[str, float]:
    """Accuracy and macro-F1 of the prototype and k-NN classifiers on the query set."""
    report = {}
    for name, predicted in (
        ("proto", prototype_predict(support, support_labels, query, metric)),
        ("knn", knn_predict(support, support_labels, query, metric, k)),
    ):
        report[f"{name}_accuracy"] = accuracy(query_labels, predicted)
        report[f"{name}_macro_f1"] = macro_f1(query_labels, predicted)
    return report
