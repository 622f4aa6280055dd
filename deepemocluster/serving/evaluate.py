"""``python -m deepemocluster.evaluate RUN_ID|CHECKPOINT [--split Test1]``: CCC per attribute.

Prints the utterance-level CCC of a trained model on one split and, when the checkpoint belongs to
an MLflow run, logs it to that run as ``eval/<split>/ccc_<attribute>``.
"""

from __future__ import annotations

import argparse
import logging

import torch

from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.errors import DeepEmoClusterError, ManifestError
from deepemocluster.metrics import ccc_report
from deepemocluster.serving.backend import load_checkpoint
from deepemocluster.serving.inference import predict_utterances
from deepemocluster.tracking import Tracker

log = logging.getLogger("deepemocluster")


def evaluate(model_ref: str, split: str, tracking_uri: str = "") -> dict[str, float]:
    """CCC report of checkpoint file or run id ``model_ref`` on ``split``."""
    checkpoint = load_checkpoint(model_ref, tracking_uri)
    cfg, model = checkpoint.restore_model()
    torch.set_num_threads(cfg.train.threads)
    corpus = load_corpus(cfg)
    rows = corpus.rows(split, labelled=True)
    if len(rows) < 2:
        raise ManifestError(
            f"split {split!r} has {len(rows)} labelled utterances with usable audio"
        )
    ds = ChunkDataset.for_rows(
        corpus.packed, rows, checkpoint.feature_mean, checkpoint.feature_std, cfg.chunking
    )
    attributes = list(cfg.model.attributes)
    pred = checkpoint.scaler.restore(
        predict_utterances(model, ds, cfg.train.eval_batch_chunks, torch.device("cpu"))
    )
    report = ccc_report(corpus.ratings(rows, attributes), pred, attributes)
    if checkpoint.run_id:
        tracker = Tracker.open(cfg.tracking, uri=tracking_uri)
        tracker.start("", run_id=checkpoint.run_id)
        tracker.log_metrics({f"eval/{split}/{k}": v for k, v in report.items()})
        tracker.end()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("model", help="MLflow run id, or a checkpoint file")
    parser.add_argument("--split", default="Test1")
    parser.add_argument(
        "--tracking-uri", default="", help="default: MLFLOW_TRACKING_URI, else runs/mlflow.db"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        report = evaluate(args.model, args.split, args.tracking_uri)
    except DeepEmoClusterError as e:
        log.error("%s", e)
        return 1
    for key, value in report.items():
        print(f"{args.split}\t{key}\t{value:.4f}")
    return 0
