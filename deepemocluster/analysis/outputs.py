"""What an analysis writes: from the utterances of a split with their clusters to the tables,
the JSON summary, the figures and ``report.html`` (``analyze.py`` decides which run, split and
epoch, and logs the result)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deepemocluster.analysis import plots, report, stats
from deepemocluster.analysis.recordings import analyse_recordings
from deepemocluster.config import flatten
from deepemocluster.config.schema import ATTRIBUTES
from deepemocluster.data.corpus import Corpus
from deepemocluster.data.manifest import Utterance
from deepemocluster.errors import ManifestError
from deepemocluster.tracking import RunRecord

PERMUTATIONS = 100


@dataclass(frozen=True)
class Run:
    """The finished run under analysis: its MLflow record, its config and data, and the best
    model's ratings of the labelled Test utterances (None for fewer than two: no figure)."""

    record: RunRecord
    cfg: DictConfig
    corpus: Corpus
    best_epoch: int
    test_ratings: np.ndarray | None  # (n, attributes) on the rating scale, clipped to it


@dataclass(frozen=True)
class Assigned:
    """The utterances of the analysed split and epoch, with their utterance-level cluster."""

    split: str
    epoch: int
    utterances: list[Utterance]
    clusters: np.ndarray


@dataclass(frozen=True)
class Labelled:
    """The labelled part of ``Assigned``: what the statistics see."""

    clusters: np.ndarray
    ratings: dict[str, np.ndarray]
    classes: np.ndarray | None

    @classmethod
    def of(cls, assigned: Assigned) -> Labelled:
        keep = [i for i, u in enumerate(assigned.utterances) if u.labelled]
        if len(keep) < 2:
            raise ManifestError(
                f"split {assigned.split!r} has {len(keep)} labelled utterances to analyse"
            )
        utts = [assigned.utterances[i] for i in keep]
        ratings = {a: np.array([getattr(u, a) for u in utts], dtype=float) for a in ATTRIBUTES}
        return cls(assigned.clusters[keep], ratings, _classes(utts))

    @property
    def low_expected_share(self) -> float | None:
        """Share of χ² cells with expected count < 5 (None without classes)."""
        if self.classes is None:
            return None
        table = stats.contingency(self.clusters, self.classes)[0]
        return stats.independence(table).low_expected_share


def write_analysis(
    run: Run, assigned: Assigned, out: Path, permutations: int = PERMUTATIONS
) -> dict:
    """Tables, summary, plots and the report into ``out``; returns the summary."""
    k = run.cfg.cluster.k
    lab = Labelled.of(assigned)
    baseline = stats.permutation_baseline(lab.clusters, lab.ratings, lab.classes, permutations)
    profile = stats.cluster_profile(k, assigned.clusters, lab.clusters, lab.ratings, lab.classes)
    summary = {
        "run_id": run.record.run_id,
        "split": assigned.split,
        "epoch": assigned.epoch,
        "best_epoch": run.best_epoch,
        "test_split": run.cfg.data.splits.test,
        "k": k,
        "n_utterances": len(assigned.utterances),
        "n_labelled": len(lab.clusters),
        "utterance_cluster": "majority vote of the chunks; ties: the earliest chunk's cluster",
        "bin_edges": {a: stats.tertile_bins(v)[1].tolist() for a, v in lab.ratings.items()},
        "chi2_low_expected_share": lab.low_expected_share,
        "observed": stats.dependency_stats(lab.clusters, lab.ratings, lab.classes),
        "shuffled_mean": baseline.mean,
        "shuffled_low": baseline.low,
        "shuffled_high": baseline.high,
        "n_permutations": baseline.n_permutations,
    }
    recordings = analyse_recordings(assigned.utterances, assigned.clusters, k, out, permutations)
    if recordings is not None:
        summary["recordings"] = recordings.summary
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    order = _by_mean_arousal(profile)
    tables = _tables(profile, order, summary)
    for name, table in tables.items():
        table.write_csv(out / f"{name}.csv")
    _utterance_table(assigned).write_csv(out / "utterances.csv")
    figures = _figures(run, lab, profile, order, out)
    tables["settings"] = _settings(run, summary)
    tables["config"] = report.Table(["key", "value"], sorted(flatten(run.cfg).items()))
    report.analysis_report(
        f"Cluster–emotion analysis: {run.record.name} ({assigned.split})",
        summary,
        tables,
        figures,
        out / "report.html",
        extra=recordings.sections if recordings is not None else (),
    )
    return summary


def _classes(labelled: list[Utterance]) -> np.ndarray | None:
    """Categorical classes, or None when the corpus has none; a missing one is "(none)"."""
    given = [u.emo_class for u in labelled]
    if all(c is None for c in given):
        return None
    return np.array([c or "(none)" for c in given])


def _by_mean_arousal(profile: stats.ClusterProfile) -> np.ndarray:
    """Cluster ids ordered by mean arousal, clusters without labelled utterances last."""
    mean = profile.moments["arousal"]["mean"]
    return np.argsort(np.where(np.isnan(mean), np.inf, mean), kind="stable")


def _tables(profile: stats.ClusterProfile, order: np.ndarray, summary: dict) -> dict:
    moments = [(a, s) for a in profile.moments for s in ("mean", "std", "median")]
    clusters = report.Table(
        ["cluster", "utterances", "labelled"]
        + [f"{a}_{s}" for a, s in moments]
        + [f"class_{c}" for c in profile.class_names],
        [
            [int(c), int(profile.n_all[c]), int(profile.n_labelled[c])]
            + [float(profile.moments[a][s][c]) for a, s in moments]
            + [int(n) for n in profile.class_counts[c]]
            for c in order
        ],
    )
    contingency = report.Table(
        ["cluster", *profile.class_names],
        [[int(c), *map(int, profile.class_counts[c])] for c in order],
    )
    tests = report.Table(
        ["statistic", "observed", "shuffled_mean", "shuffled_2.5%", "shuffled_97.5%"],
        [
            [key, value, summary["shuffled_mean"][key], summary["shuffled_low"][key]]
            + [summary["shuffled_high"][key]]
            for key, value in summary["observed"].items()
        ],
    )
    return {"clusters": clusters, "contingency": contingency, "tests": tests}


def _utterance_table(assigned: Assigned) -> report.Table:
    return report.Table(
        ["utterance", "split", "cluster", *ATTRIBUTES, "emo_class"],
        [
            [u.id, u.split, int(c), *(getattr(u, a) for a in ATTRIBUTES), u.emo_class]
            for u, c in zip(assigned.utterances, assigned.clusters, strict=True)
        ],
    )


def _figures(
    run: Run, lab: Labelled, profile: stats.ClusterProfile, order: np.ndarray, out: Path
) -> dict[str, Path]:
    used = order[profile.n_labelled[order] > 0]
    m = profile.moments
    figures = {
        "boxes": plots.attribute_boxes(
            lab.clusters, lab.ratings, used, out / "ratings_per_cluster.png"
        ),
        "centroids": plots.centroid_map(
            m["valence"]["mean"][used],
            m["arousal"]["mean"][used],
            m["dominance"]["mean"][used],
            profile.n_all[used],
            used,
            out / "centroids_valence_arousal.png",
            points=(lab.ratings["valence"], lab.ratings["arousal"]),
        ),
        "curves": plots.training_curves(run.record.history, out / "training_curves.png"),
    }
    if len(profile.class_names):
        figures["heatmap"] = plots.class_heatmap(
            profile.class_counts[used], used, profile.class_names, out / "class_heatmap.png"
        )
    if run.test_ratings is not None:
        attributes = list(run.cfg.model.attributes)
        truth = run.corpus.ratings(labelled_test_rows(run.cfg, run.corpus), attributes)
        figures["scatter"] = plots.predicted_vs_true(
            truth, run.test_ratings, attributes, out / "test_predicted_vs_true.png"
        )
    return figures


def _settings(run: Run, summary: dict) -> report.Table:
    """The run at a glance: identity, data, model and clustering settings, test CCC."""
    cfg, record = run.cfg, run.record
    latest = {k: v[-1][1] for k, v in record.history.items() if v}
    rows = [
        ("run", f"{record.name} ({record.run_id})"),
        ("git commit", record.tags.get("git_commit", "unknown")),
        ("corpus", f"{cfg.data.format}: {cfg.data.root}"),
        ("labelled fraction of Train", cfg.data.label_fraction),
        ("features", f"{cfg.features.kind}, {cfg.features.n_mels} bins"),
        ("chunking", f"{cfg.chunking.n_chunks} chunks × {cfg.chunking.frames} frames"),
        ("attributes", ", ".join(cfg.model.attributes)),
        (
            "clustering",
            f"{cfg.cluster.mode}, k={cfg.cluster.k}, PCA {cfg.cluster.pca_dim or 'off'}",
        ),
        ("epochs", f"{cfg.train.epochs} (best: {summary['best_epoch']})"),
        ("analysed", f"{summary['split']}, epoch {summary['epoch']}"),
    ]
    rows += [(key, value) for key, value in sorted(latest.items()) if key.startswith("test/")]
    return report.Table(["setting", "value"], rows)


def _jsonable(value):
    """NaN → null (JSON has no NaN), numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def labelled_test_rows(cfg: DictConfig, corpus: Corpus) -> np.ndarray:
    """The labelled Test utterances: those the predicted-vs-true figure draws (and that training
    scores)."""
    return corpus.rows(cfg.data.splits.test, labelled=True)
