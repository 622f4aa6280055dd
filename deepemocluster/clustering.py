"""Embeddings → optional PCA-whitening → L2 normalisation → faiss k-means → one id per chunk, and
the chunks' vote for one id per utterance.

The only module that imports faiss. Steps are small functions in the order they run, so each can
be tested alone; the preprocessing is returned as plain numpy arrays so prediction can apply it
later without faiss.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch  # noqa: F401  (torch before faiss: docs/original_work.md; faiss-cpu wheels still bring their own OpenMP)

from deepemocluster.runtime.faults import failpoint


@dataclass(frozen=True)
class Projection:
    """x → (x @ matrix.T + bias), then optional row L2 normalisation."""

    matrix: np.ndarray | None
    bias: np.ndarray | None
    l2_normalize: bool

    def __call__(self, x: np.ndarray, overwrite: bool = False) -> np.ndarray:
        """Projected float32 rows. ``x`` is left unchanged unless ``overwrite`` is set; then,
        without PCA, a float32 C-contiguous ``x`` is L2-normalised in place and returned (no
        N x d copy)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.matrix is not None:
            x = x @ self.matrix.T
            x += self.bias
        elif self.l2_normalize and not overwrite:
            x = x.copy()
        if self.l2_normalize:
            l2_normalize_rows(x)
        return x


def l2_normalize_rows(x: np.ndarray) -> None:
    """In place; the row norms come from einsum, which needs no N x d temporary of squares as
    ``np.linalg.norm`` does. All-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    x /= np.maximum(norms, 1e-12)[:, None]


@dataclass(frozen=True)
class Clustering:
    assignments: np.ndarray  # (N,) int64 cluster id of each embedding
    centroids: np.ndarray  # (K, d) in the projected space
    projection: Projection

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignments, minlength=len(self.centroids))

    @property
    def n_empty(self) -> int:
        return int((self.sizes == 0).sum())


def fit_projection(x: np.ndarray, pca_dim: int, l2_normalize: bool) -> Projection:
    """PCA-whitening to ``pca_dim`` (clamped to samples and input dims; 0 = off), then L2."""
    dim = min(pca_dim, x.shape[1], x.shape[0] - 1)
    if dim <= 0:
        return Projection(None, None, l2_normalize)
    pca = faiss.PCAMatrix(x.shape[1], dim, -0.5)  # positional: faiss 1.15 rejects keywords
    pca.train(np.ascontiguousarray(x, dtype=np.float32))
    matrix = faiss.vector_to_array(pca.A).reshape(dim, x.shape[1])
    return Projection(matrix, faiss.vector_to_array(pca.b), l2_normalize)


def run_kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means on all points (no subsampling, no early stop); returns (assignments, centroids)."""
    n, d = x.shape
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    if not all_finite(x):
        raise ValueError("k-means input contains NaN or Inf")
    km = faiss.Kmeans(
        d, k, niter=iterations, seed=seed, max_points_per_centroid=n, min_points_per_centroid=1
    )
    km.cp.early_stop_threshold = 0.0
    km.train(x)
    _, ids = km.index.search(x, 1)
    return ids[:, 0].astype(np.int64), km.centroids.copy()


def all_finite(x: np.ndarray, block: int = 65536) -> bool:
    """``np.isfinite(x).all()`` block by block: no N x d boolean temporary."""
    return all(np.isfinite(x[s : s + block]).all() for s in range(0, len(x), block))


def cluster(
    embeddings: np.ndarray,
    k: int,
    iterations: int,
    seed: int,
    pca_dim: int = 0,
    l2_normalize: bool = True,
) -> Clustering:
    """Fit the projection, project, run k-means. **May overwrite** ``embeddings``: without PCA a
    float32 C-contiguous input is L2-normalised in place, so the N x d matrix, the largest array
    of an epoch, exists once (callers hand over a fresh array they own; pass a copy otherwise)."""
    failpoint("cluster")
    projection = fit_projection(embeddings, pca_dim, l2_normalize)
    x = projection(embeddings, overwrite=True)
    assignments, centroids = run_kmeans(x, k, iterations, seed)
    return Clustering(assignments, centroids, projection)


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each (already projected) row and its Euclidean distance."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    sq_dist, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return ids[:, 0].astype(np.int64), np.sqrt(np.maximum(sq_dist[:, 0], 0.0))


def utterance_clusters(
    chunk_clusters: np.ndarray, chunk_distances: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, C) chunk ids → (n,) majority vote per utterance, ties broken by the earliest chunk
    (not the lowest id, which would bias ties towards low-numbered clusters); with distances,
    also the mean distance of the winning chunks to their centroid."""
    chunk_clusters = np.asarray(chunk_clusters, dtype=np.int64)
    n, _ = chunk_clusters.shape
    k = int(chunk_clusters.max()) + 1 if chunk_clusters.size else 1
    counts = np.zeros((n, k), dtype=np.int64)
    np.add.at(counts, (np.arange(n)[:, None], chunk_clusters), 1)
    votes = np.take_along_axis(counts, chunk_clusters, axis=1)
    first_mode = np.argmax(votes == counts.max(axis=1, keepdims=True), axis=1)
    winners = chunk_clusters[np.arange(n), first_mode]
    if chunk_distances is None:
        return winners, None
    won = chunk_clusters == winners[:, None]
    return winners, (np.where(won, chunk_distances, 0.0).sum(1) / won.sum(1))


def set_threads(n: int) -> None:
    faiss.omp_set_num_threads(n)
