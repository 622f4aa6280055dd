"""``python -m deepemocluster.analyze RUN_ID [--split Train|Development|Test1] [--epoch best|N]``.

Do the latent clusters relate to emotions? Takes a run's cluster assignments (logged per epoch
for the Train chunks, ``final`` = the best weights), or, for another split, recomputes them with
the best checkpoint's clustering; joins them with the corpus labels; writes tables, a JSON summary,
plots and one ``report.html`` to the run under ``analysis/<split>-<epoch>/``, and the key numbers
as ``analysis/<split>/...`` metrics. Training analyses its Train split when it finishes, with
``analyze_finished``: from what the training process already holds (``Finished``), so no pass
over the data is made twice. A split with long recordings cut into segments gets a per-recording
part (``recordings.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.analysis import plots, report, stats
from deepemocluster.analysis.recordings import RECORDING_METRICS, analyse_recordings
from deepemocluster.analysis.recordings import verdict as recording_verdict
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.clustering import utterance_clusters
from deepemocluster.config import flatten
from deepemocluster.config.schema import ATTRIBUTES
from deepemocluster.data.corpus import Corpus, load_corpus
from deepemocluster.data.manifest import Utterance
from deepemocluster.errors import CheckpointError, ConfigError, DeepEmoClusterError, ManifestError
from deepemocluster.serving.api import Model
from deepemocluster.tracking import (
    RunRecord,
    download_artifact,
    download_checkpoint,
    fetch_run,
    log_to_run,
    resolve_uri,
)

log = logging.getLogger("deepemocluster")
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
class Finished:
    """What a training process holds at its end: with it the analysis of Train loads no
    checkpoint, reads no assignments back and runs no model (its one Test pass and its one
    embedding of Train are the final stage's)."""

    cfg: DictConfig  # the best checkpoint's config, as a later ``analyze`` reads it
    corpus: Corpus
    best_epoch: int
    train_rows: np.ndarray  # the Train utterances (corpus rows) in the training order
    chunk_clusters: np.ndarray  # (len(train_rows) * chunks,) the final clustering
    test_ratings: np.ndarray  # the best model's ratings of labelled_test_rows(cfg, corpus)


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


def analyze(
    run_id: str,
    split: str = "",
    epoch: str = "best",
    tracking_uri: str = "",
    corpus: Corpus | None = None,
    permutations: int = PERMUTATIONS,
) -> dict:
    """Analyse one run from what it logged and log the results to it; returns the JSON summary.

    ``split`` defaults to the run's Train split; ``epoch`` is ``best`` or an epoch number (Train
    only: other splits exist only for the best checkpoint). ``corpus`` skips reloading the data
    when the caller already has it."""
    uri = resolve_uri(tracking_uri, "runs")
    record = fetch_run(uri, run_id)
    checkpoint = Checkpoint.load(download_checkpoint(uri, run_id))
    if checkpoint.clusters is None:
        raise CheckpointError(f"run {run_id} was trained without clusters: nothing to analyse")
    predictor = Model.from_checkpoint(checkpoint)
    cfg = predictor.cfg
    train = cfg.data.splits.train
    split = split or train
    if epoch != "best" and not epoch.isdigit():
        raise ConfigError(f"--epoch must be 'best' or an epoch number, got {epoch!r}")
    if epoch != "best" and split != train:
        raise ConfigError(
            f"--epoch {epoch}: per-epoch assignments exist for the {train} split only; "
            "other splits are analysed with the best checkpoint (--epoch best)"
        )
    torch.set_num_threads(cfg.train.threads)
    corpus = corpus or load_corpus(cfg)
    if record.tags.get("data_fingerprint") not in (None, corpus.fingerprint):
        log.warning("the corpus differs from the one run %s was trained on", run_id)
    rows = labelled_test_rows(cfg, corpus)
    rated = predictor.ratings(predictor.dataset(corpus.packed, rows)) if len(rows) >= 2 else None
    run = Run(record, cfg, corpus, checkpoint.epoch, rated)
    if split == train:
        with tempfile.TemporaryDirectory() as tmp:
            assigned = _logged(run, uri, epoch, Path(tmp))
    else:
        assigned = _recomputed(run, predictor, split)
    return _write_and_log(uri, run, assigned, epoch, permutations)


def analyze_finished(
    run_id: str, tracking_uri: str, finished: Finished, permutations: int = PERMUTATIONS
) -> dict:
    """The analysis of Train with the best weights at the end of training (``analyze`` with the
    defaults gives the same summary and tables later), from what training holds."""
    uri = resolve_uri(tracking_uri, "runs")
    cfg, corpus = finished.cfg, finished.corpus
    rows = labelled_test_rows(cfg, corpus)
    rated = finished.test_ratings if len(rows) >= 2 else None
    run = Run(fetch_run(uri, run_id), cfg, corpus, finished.best_epoch, rated)
    chunks = finished.chunk_clusters.reshape(-1, cfg.chunking.n_chunks)
    assigned = Assigned(
        cfg.data.splits.train,
        finished.best_epoch,
        [corpus.manifest[r] for r in finished.train_rows],
        utterance_clusters(chunks)[0],
    )
    return _write_and_log(uri, run, assigned, "best", permutations)


def labelled_test_rows(cfg: DictConfig, corpus: Corpus) -> np.ndarray:
    """The labelled Test utterances: those the predicted-vs-true figure draws (and that training
    scores)."""
    return corpus.rows(cfg.data.splits.test, labelled=True)


def _write_and_log(uri: str, run: Run, assigned: Assigned, epoch: str, permutations: int) -> dict:
    """The analysis of ``assigned`` into a temporary folder, logged to the run with its key
    numbers as metrics; returns the summary."""
    split, run_id = assigned.split, run.record.run_id
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "analysis"
        out.mkdir()
        summary = write_analysis(run, assigned, out, permutations)
        metrics = {f"analysis/{split}/{k}": v for k, v in summary["observed"].items()}
        metrics |= {
            f"analysis/{split}/{k}_shuffled": v for k, v in summary["shuffled_mean"].items()
        }
        if "recordings" in summary:
            metrics |= {
                f"analysis/{split}/recordings/{k}": summary["recordings"][k]
                for k in RECORDING_METRICS
            }
        name = f"{split}-{'best' if epoch == 'best' else f'epoch{assigned.epoch:03d}'}"
        log_to_run(uri, run_id, out, f"analysis/{name}", _finite(metrics), assigned.epoch)
    log.info("analysis of run %s (%s) logged under analysis/%s", run_id, split, name)
    return summary


def _logged(run: Run, uri: str, epoch: str, tmp: Path) -> Assigned:
    """Chunk assignments logged by training (utterance order: ``assignments/utterances.txt``)."""
    run_id, cfg = run.record.run_id, run.cfg
    name = "final.npz" if epoch == "best" else f"epoch_{int(epoch):03d}.npz"
    with np.load(download_artifact(uri, run_id, f"assignments/{name}", tmp)) as f:
        chunks = f["assignments"].reshape(-1, cfg.chunking.n_chunks)
    ids = download_artifact(uri, run_id, "assignments/utterances.txt", tmp).read_text().split()
    # two_stage runs log only the labelled chunks, which come first in the training order
    ids = ids[: len(chunks)]
    by_id = {u.id: u for u in run.corpus.manifest}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ManifestError(
            f"{len(missing)} utterances of run {run_id} are not in the corpus now, e.g. {missing[0]}"
        )
    return Assigned(
        cfg.data.splits.train,
        run.best_epoch if epoch == "best" else int(epoch),
        [by_id[i] for i in ids],
        utterance_clusters(chunks)[0],
    )


def _recomputed(run: Run, predictor: Model, split: str) -> Assigned:
    """Embed the split's chunks with the best weights and assign them to the final centroids."""
    rows = run.corpus.rows(split)
    if len(rows) == 0:
        raise ManifestError(f"split {split!r} has no utterances with usable audio")
    clusters, _ = predictor.clusters(predictor.dataset(run.corpus.packed, rows))
    return Assigned(split, run.best_epoch, [run.corpus.manifest[r] for r in rows], clusters)


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


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


def _jsonable(value):
    """NaN → null (JSON has no NaN), numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.analyze", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_id", help="MLflow run id of a finished training run")
    parser.add_argument("--split", default="", help="default: the run's Train split")
    parser.add_argument("--epoch", default="best", help="best, or an epoch number (Train only)")
    parser.add_argument(
        "--tracking-uri", default="", help="default: MLFLOW_TRACKING_URI, else runs/mlflow.db"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = analyze(args.run_id, args.split, args.epoch, args.tracking_uri)
    except DeepEmoClusterError as e:
        log.error("%s", e)
        return 1
    lines = report.verdict(summary)
    if "recordings" in summary:
        lines += recording_verdict(summary["recordings"])
    print("\n".join(lines))
    return 0
