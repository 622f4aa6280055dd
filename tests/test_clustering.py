"""Clustering and the uniform-cluster sampler, on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from deepemocluster.clustering import assign, cluster, fit_projection, run_kmeans
from deepemocluster.data.samplers import ShuffledBatchSampler, UniformClusterSampler
from deepemocluster.metrics import nmi


def _blobs(n: int, k: int, d: int, seed: int = 0, spread: float = 6.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.mark.parametrize("pca_dim", [0, 16])
def test_recovers_planted_blobs(pca_dim):
    x, labels = _blobs(3000, 8, 32)
    result = cluster(x, k=8, iterations=20, seed=3, pca_dim=pca_dim)
    assert nmi(labels, result.assignments) > 0.9
    assert result.sizes.sum() == 3000 and result.n_empty == 0


def test_pca_is_clamped_to_what_small_data_allows():
    x, _ = _blobs(20, 2, 64)
    projection = fit_projection(x, pca_dim=256, l2_normalize=True)
    y = projection(x)
    assert y.shape == (20, 19)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)


def test_whitening_equalises_component_variances():
    x, _ = _blobs(4000, 5, 16)
    std = fit_projection(x, pca_dim=8, l2_normalize=False)(x).std(axis=0)
    np.testing.assert_allclose(std / std.mean(), 1.0, rtol=0.02)


def test_no_subsampling_centroids_are_means_of_all_points():
    # faiss' default caps training at 256 points per centroid; then the centroids are means of a
    # sample and differ from the means of all assigned points by ~1/sqrt(256) of the spread.
    x, _ = _blobs(20000, 2, 4, spread=20.0)
    assignments, centroids = run_kmeans(x, 2, 30, seed=1)
    for c in range(2):
        np.testing.assert_allclose(centroids[c], x[assignments == c].mean(axis=0), atol=2e-3)


def test_kmeans_refuses_too_few_points_and_nan():
    with pytest.raises(ValueError, match="at least k=5"):
        run_kmeans(np.zeros((4, 3), np.float32), 5, 10, 0)
    bad = np.ones((10, 3), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_kmeans(bad, 2, 10, 0)


def test_assign_returns_nearest_centroid_and_distance():
    centroids = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    ids, dist = assign(np.array([[1.0, 0.0], [9.0, 3.0]], np.float32), centroids)
    assert ids.tolist() == [0, 1]
    np.testing.assert_allclose(dist, [1.0, np.hypot(1, 3)], rtol=1e-5)


def test_new_seed_gives_a_different_but_equally_good_clustering():
    x, labels = _blobs(2000, 6, 16, spread=2.0)
    a, b = cluster(x, 6, 20, seed=1), cluster(x, 6, 20, seed=2)
    assert not np.array_equal(a.assignments, b.assignments)
    assert nmi(a.assignments, labels) > 0.7 and nmi(b.assignments, labels) > 0.7


def test_sampler_serves_clusters_uniformly_despite_unequal_sizes():
    sizes = [5000, 300, 40, 3]
    labels = np.repeat(np.arange(4), sizes)
    ids = np.arange(len(labels)) + 1000  # global ids differ from positions
    sampler = UniformClusterSampler(ids, labels, batch_size=256, seed=0)
    served = np.concatenate(list(sampler))
    assert len(served) == len(ids) and len(list(sampler)) == len(sampler)
    hist = np.bincount(labels[served - 1000], minlength=4)
    assert hist.max() - hist.min() <= 1
    # and each cluster's members are drawn across the cluster, not one point repeated
    assert len(np.unique(served[labels[served - 1000] == 1])) > 250


def test_sampler_skips_empty_clusters_and_is_reproducible():
    labels = np.array([0] * 50 + [7] * 50)  # ids 1..6 are empty clusters
    a = np.concatenate(list(UniformClusterSampler(np.arange(100), labels, 16, seed=5)))
    b = np.concatenate(list(UniformClusterSampler(np.arange(100), labels, 16, seed=5)))
    np.testing.assert_array_equal(a, b)
    assert set(labels[a]) == {0, 7}


def test_shuffled_sampler_is_a_permutation():
    served = np.concatenate(list(ShuffledBatchSampler(np.arange(100), 32, seed=1)))
    assert sorted(served.tolist()) == list(range(100)) and served.tolist() != list(range(100))


def test_shuffled_sampler_repeats_passes_to_fill_an_epoch():
    served = np.concatenate(list(ShuffledBatchSampler(np.arange(10), 4, seed=2, n_samples=25)))
    assert len(served) == 25
    counts = np.bincount(served, minlength=10)
    assert counts.min() == 2 and counts.max() == 3  # whole passes first, then part of one
