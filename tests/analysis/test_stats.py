"""Dependency statistics against scipy on hand-built data: a planted dependency is found, shuffled
assignments are not, and every number agrees with its textbook definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from deepemocluster.analysis import stats

CLASSES = np.array(list("NHASC"))


def planted(n: int = 300, k: int = 5, seed: int = 0):
    """Clusters that prefer one class each (60 %) and shift arousal by 0.5 per cluster id;
    valence is pure noise."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, k, n)
    preferred = CLASSES[clusters % len(CLASSES)]
    classes = np.where(rng.random(n) < 0.6, preferred, rng.choice(CLASSES, n))
    ratings = {
        "arousal": np.clip(3.0 + 0.5 * clusters + rng.normal(0, 0.7, n), 1, 7),
        "valence": np.clip(rng.normal(4, 1, n), 1, 7),
    }
    return clusters, ratings, classes


def test_planted_dependency_is_found_and_matches_scipy():
    clusters, ratings, classes = planted()
    table, names = stats.contingency(clusters, classes)
    assert table.sum() == len(clusters) and list(names) == sorted(CLASSES)
    result = stats.independence(table)
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    assert result.p < 1e-3
    assert (result.chi2, result.p, result.dof) == pytest.approx((chi2, p, dof))
    assert result.cramers_v == pytest.approx(
        sps.contingency.association(table, method="cramer", correction=False)
    )
    rank = stats.kruskal(clusters, ratings["arousal"])
    h, p_h = sps.kruskal(*(ratings["arousal"][clusters == c] for c in range(5)))
    assert (rank.h, rank.p) == pytest.approx((h, p_h))
    assert rank.p < 1e-3
    assert rank.epsilon2 == pytest.approx(h / (len(clusters) - 1))

    observed = stats.dependency_stats(clusters, ratings, classes)
    assert observed["class/chi2_p"] < 1e-3 and observed["arousal/kruskal_p"] < 1e-3
    assert observed["valence/kruskal_p"] > 1e-3  # noise stays noise
    baseline = stats.permutation_baseline(clusters, ratings, classes, n_permutations=50)
    for key in ("class/cramers_v", "class/nmi", "arousal/epsilon2", "arousal/nmi_bins"):
        assert observed[key] > baseline.high[key] > baseline.mean[key], key
    assert baseline.low["valence/epsilon2"] <= observed["valence/epsilon2"]
    assert observed["valence/epsilon2"] <= baseline.high["valence/epsilon2"]


def test_shuffled_assignments_show_no_dependency():
    clusters, ratings, classes = planted()
    p_values = []
    for seed in range(20):
        shuffled = np.random.default_rng(seed).permutation(clusters)
        out = stats.dependency_stats(shuffled, ratings, classes)
        p_values += [out["class/chi2_p"], out["arousal/kruskal_p"]]
    assert sum(p > 0.01 for p in p_values) >= 36  # 40 tests, ~0.4 expected below 0.01


def test_independence_ignores_empty_clusters_and_degenerate_tables():
    table = np.array([[10, 2], [0, 0], [3, 9]])
    assert stats.independence(table).chi2 == pytest.approx(stats.independence(table[[0, 2]]).chi2)
    assert np.isnan(stats.independence(np.array([[5, 3]])).p)  # one cluster: no test


def test_kruskal_effect_size_is_maximal_for_separated_clusters_and_nan_for_constants():
    clusters = np.repeat(np.arange(3), 20)
    values = clusters * 10.0 + np.linspace(0, 1, 60)
    # perfectly separated groups: ε² = H_max / (n − 1) = 1 − Σ(nᵢ³ − nᵢ) / (n³ − n)
    assert stats.kruskal(clusters, values).epsilon2 == pytest.approx(
        1 - 3 * (20**3 - 20) / (60**3 - 60)
    )
    assert np.isnan(stats.kruskal(clusters, np.ones(60)).h)


def test_tertile_bins_are_balanced():
    bins, edges = stats.tertile_bins(np.arange(1.0, 91.0))
    assert np.bincount(bins).tolist() == [30, 30, 30]
    assert edges.tolist() == pytest.approx([30.67, 60.33], abs=0.01)


def test_cluster_profile_counts_and_moments():
    clusters = np.array([0, 0, 2, 2, 2])
    ratings = {"arousal": np.array([1.0, 3.0, 5.0, 6.0, 7.0])}
    classes = np.array(["N", "A", "A", "A", "N"])
    all_clusters = np.array([0, 0, 2, 2, 2, 1, 1])  # two unlabelled utterances in cluster 1
    profile = stats.cluster_profile(4, all_clusters, clusters, ratings, classes)
    assert profile.n_all.tolist() == [2, 2, 3, 0]
    assert profile.n_labelled.tolist() == [2, 0, 3, 0]
    mean = profile.moments["arousal"]["mean"]
    assert mean[0] == 2.0 and mean[2] == 6.0 and np.isnan(mean[1]) and np.isnan(mean[3])
    assert profile.moments["arousal"]["median"][2] == 6.0
    assert list(profile.class_names) == ["A", "N"]
    assert profile.class_counts.tolist() == [[1, 1], [0, 0], [2, 1], [0, 0]]
