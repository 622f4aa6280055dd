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
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.analysis import report
from deepemocluster.analysis.outputs import (
    PERMUTATIONS,
    Assigned,
    Run,
    labelled_test_rows,
    write_analysis,
)
from deepemocluster.analysis.recordings import RECORDING_METRICS
from deepemocluster.analysis.recordings import verdict as recording_verdict
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.clustering import utterance_clusters
from deepemocluster.data.corpus import Corpus, load_corpus
from deepemocluster.errors import CheckpointError, ConfigError, DeepEmoClusterError, ManifestError
from deepemocluster.serving.api import Model
from deepemocluster.tracking import (
    download_artifact,
    download_checkpoint,
    fetch_run,
    log_to_run,
    resolve_uri,
)

log = logging.getLogger("deepemocluster")


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


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


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
