"""Cluster–emotion dependency statistics: pure functions on numpy arrays (no MLflow, no torch).

Clusters are utterance-level ids (``clustering.utterance_clusters`` turns chunk votes into one id
per utterance). Every test here answers "do the clusters carry emotion information?": a contingency
analysis against the categorical class, a rank test per continuous attribute, and the same numbers
for shuffled cluster ids, so a reader sees what "no dependency" looks like on this very data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from deepemocluster.metrics import nmi

BIN_NAMES = ("low", "mid", "high")


def contingency(clusters: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, n_classes) counts with rows = cluster ids 0..max, columns = the sorted class names."""
    names, col = np.unique(np.asarray(classes), return_inverse=True)
    table = np.zeros((int(clusters.max()) + 1, len(names)), dtype=np.int64)
    np.add.at(table, (clusters, col), 1)
    return table, names


@dataclass(frozen=True)
class Independence:
    chi2: float
    dof: int
    p: float
    cramers_v: float
    low_expected_share: float  # cells with expected count < 5: the χ² approximation gets rough


def independence(table: np.ndarray) -> Independence:
    """χ² test of independence (no continuity correction) and Cramér's V, after dropping empty
    rows/columns (an empty cluster has no expected counts and would make the test undefined)."""
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if min(table.shape) < 2:
        return Independence(np.nan, 0, np.nan, np.nan, np.nan)
    chi2, p, dof, expected = stats.chi2_contingency(table, correction=False)
    v = np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
    return Independence(float(chi2), int(dof), float(p), float(v), float((expected < 5).mean()))


@dataclass(frozen=True)
class RankTest:
    h: float
    p: float
    epsilon2: float  # H / (n − 1): share of rank variance explained by the clusters, 0..1


def kruskal(clusters: np.ndarray, values: np.ndarray) -> RankTest:
    """Kruskal–Wallis H across clusters, with the ε² effect size (Tomczak & Tomczak 2014)."""
    groups = [values[clusters == c] for c in np.unique(clusters)]
    if len(groups) < 2 or np.ptp(values) == 0:
        return RankTest(np.nan, np.nan, np.nan)
    h, p = stats.kruskal(*groups)
    return RankTest(float(h), float(p), float(h / (len(values) - 1)))


def tertile_bins(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low/mid/high bins (0, 1, 2) at the data's tertiles, and the two cut points: tertiles keep
    the bins about equally full, so the NMI is not dominated by a crowded middle of the scale."""
    edges = np.quantile(values, [1 / 3, 2 / 3])
    return np.digitize(values, edges, right=True), edges


def dependency_stats(
    clusters: np.ndarray, ratings: dict[str, np.ndarray], classes: np.ndarray | None
) -> dict[str, float]:
    """Every dependency number as a flat ``{"class/cramers_v": …, "arousal/epsilon2": …}`` dict."""
    out: dict[str, float] = {}
    if classes is not None:
        ind = independence(contingency(clusters, classes)[0])
        out |= {
            "class/chi2": ind.chi2,
            "class/chi2_p": ind.p,
            "class/cramers_v": ind.cramers_v,
            "class/nmi": nmi(clusters, classes),
        }
    for name, values in ratings.items():
        rank = kruskal(clusters, values)
        out |= {
            f"{name}/kruskal_h": rank.h,
            f"{name}/kruskal_p": rank.p,
            f"{name}/epsilon2": rank.epsilon2,
            f"{name}/nmi_bins": nmi(clusters, tertile_bins(values)[0]),
        }
    return out


@dataclass(frozen=True)
class Baseline:
    """``dependency_stats`` over shuffled cluster ids: mean and central 95 % range per number."""

    n_permutations: int
    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]


def permutation_baseline(
    clusters: np.ndarray,
    ratings: dict[str, np.ndarray],
    classes: np.ndarray | None,
    n_permutations: int = 100,
    seed: int = 0,
) -> Baseline:
    """Shuffling utterance → cluster keeps cluster sizes and label distributions but breaks any
    link between them: the spread of each statistic under shuffling is "no dependency"."""
    rng = np.random.default_rng(seed)
    runs = [
        dependency_stats(rng.permutation(clusters), ratings, classes) for _ in range(n_permutations)
    ]
    keys = runs[0].keys() if runs else ()
    values = {k: np.array([r[k] for r in runs]) for k in keys}
    return Baseline(
        n_permutations,
        {k: float(np.nanmean(v)) for k, v in values.items()},
        {k: float(np.nanpercentile(v, 2.5)) for k, v in values.items()},
        {k: float(np.nanpercentile(v, 97.5)) for k, v in values.items()},
    )


@dataclass(frozen=True)
class ClusterProfile:
    """Per-cluster description: sizes, rating moments, class counts (rows = cluster ids)."""

    n_all: np.ndarray  # (k,) utterances in the cluster, labelled or not
    n_labelled: np.ndarray  # (k,) utterances the statistics use
    moments: dict[str, dict[str, np.ndarray]]  # attribute → mean/std/median → (k,)
    class_names: np.ndarray
    class_counts: np.ndarray  # (k, n_classes)


def cluster_profile(
    k: int,
    all_clusters: np.ndarray,
    clusters: np.ndarray,
    ratings: dict[str, np.ndarray],
    classes: np.ndarray | None,
) -> ClusterProfile:
    """``all_clusters``: every utterance of the split; ``clusters``/``ratings``/``classes``: the
    labelled ones. Empty clusters get size 0 and NaN moments."""
    moments = {
        name: {
            stat: np.array(
                [fn(values[clusters == c]) if (clusters == c).any() else np.nan for c in range(k)]
            )
            for stat, fn in (("mean", np.mean), ("std", np.std), ("median", np.median))
        }
        for name, values in ratings.items()
    }
    if classes is None:
        names, counts = np.array([], dtype=str), np.zeros((k, 0), dtype=np.int64)
    else:
        table, names = contingency(clusters, classes)
        counts = np.zeros((k, len(names)), dtype=np.int64)
        counts[: len(table)] = table
    return ClusterProfile(
        np.bincount(all_clusters, minlength=k),
        np.bincount(clusters, minlength=k),
        moments,
        names,
        counts,
    )
