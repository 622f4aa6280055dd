"""Clustering, the uniform-cluster sampler (on planted data), and the OpenMP setting of the package."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from deepemocluster.clustering import (
    Projection,
    all_finite,
    assign,
    cluster,
    fit_projection,
    run_kmeans,
    utterance_clusters,
)
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


def test_cluster_normalises_its_input_in_place_without_pca():
    x, labels = _blobs(3000, 8, 32)
    before = x.copy()
    result = cluster(x, k=8, iterations=20, seed=3)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)  # overwritten
    expected = before / np.linalg.norm(before, axis=1, keepdims=True)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-7)
    assert nmi(labels, result.assignments) > 0.9
    np.testing.assert_array_equal(assign(x, result.centroids)[0], result.assignments)


def test_cluster_leaves_its_input_alone_with_pca():
    x, _ = _blobs(1000, 4, 32)
    before = x.copy()
    cluster(x, k=4, iterations=10, seed=0, pca_dim=8)
    np.testing.assert_array_equal(x, before)


def test_projection_copies_unless_told_to_overwrite():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], np.float32)
    before = x.copy()
    projection = Projection(None, None, l2_normalize=True)
    y = projection(x)
    np.testing.assert_array_equal(x, before)  # prediction and analysis keep their embeddings
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], rtol=1e-6)
    assert projection(x, overwrite=True) is x
    np.testing.assert_array_equal(x, y)


def test_all_finite_looks_at_every_block():
    x = np.ones((1000, 3), np.float32)
    assert all_finite(x, block=64)
    x[999, 2] = np.inf  # the last, partial block
    assert not all_finite(x, block=64)


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


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_package_sets_a_passive_openmp_wait_policy_unless_told(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import deepemocluster, os, sys; sys.stdout.write(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


def test_utterance_clusters_vote_and_break_ties_by_the_earliest_chunk():
    chunks = np.array([[2, 2, 1], [3, 1, 1], [0, 3, 2], [4, 1, 4]])
    dist = np.array([[0.2, 0.4, 9.0], [9.0, 0.1, 0.3], [0.5, 1.0, 2.0], [1.0, 9.0, 3.0]])
    winners, mean_dist = utterance_clusters(chunks, dist)
    assert winners.tolist() == [2, 1, 0, 4]
    assert mean_dist.tolist() == pytest.approx([0.3, 0.2, 0.5, 2.0])
    assert utterance_clusters(chunks)[1] is None
