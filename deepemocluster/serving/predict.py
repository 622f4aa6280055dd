"""``python -m deepemocluster.predict --model RUN_ID|CHECKPOINT PATH... --out preds.csv``.

Per audio file: arousal/valence/dominance on the labels' scale (1–7; clipped to it), the cluster of the run's final
clustering (majority vote of the file's chunks) with the mean distance of the voting chunks to its
centroid, and the duration. A long recording (``--segment auto``: longer than ``segment.max_s``)
is cut into speaking turns as in training and gets one row per turn and a ``whole-file`` summary
row (``timeline.py``); ``--timeline DIR`` draws each file's ratings over time. Files are
processed a small batch at a time and each batch's rows are written at once, so thousands of
files need no more memory than one batch; a file that cannot be used gets its reason in the
``error`` column and the batch goes on. The network runs in torch, or (``--backend onnx``) in
onnxruntime from an exported file; decoding, features and chunking are the same code for both.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.analysis import plots
from deepemocluster.analysis.stats import utterance_clusters
from deepemocluster.checkpoint import Checkpoint
from deepemocluster.clustering import Projection, assign
from deepemocluster.data.audio import AUDIO_SUFFIXES, AudioSpan
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.features import FeatureSettings, PackedFeatures
from deepemocluster.data.labels import LabelScaler
from deepemocluster.data.segments import SegmentSettings
from deepemocluster.errors import AudioError, CheckpointError
from deepemocluster.model import DeepEmoCluster
from deepemocluster.runtime.cli import exit_code
from deepemocluster.serving.inference import embed_chunks, predict_utterances
from deepemocluster.serving.timeline import (
    SEGMENT_MODES,
    WHOLE_FILE,
    TimelineWriter,
    check_mode,
    output_columns,
    plan_file,
    rows_in_order,
)
from deepemocluster.tracking import download_checkpoint, resolve_uri

log = logging.getLogger("deepemocluster")
BATCH_FILES = 32
_CPU = torch.device("cpu")


@dataclass(frozen=True)
class Outputs:
    """What a backend computes for n utterances of C chunks each (None: not asked for)."""

    ratings: np.ndarray | None = None  # (n, n_attributes) on the rating scale, clipped to it
    chunk_clusters: np.ndarray | None = None  # (n, C) nearest centroid of every chunk
    chunk_distances: np.ndarray | None = None  # (n, C) distance to it, in the projected space


class Backend(Protocol):
    """A trained model that maps chunked features to ratings and clusters (torch, or ONNX)."""

    clustered: bool  # the run's final clustering is part of the model

    def dataset(self, packed: PackedFeatures, rows: np.ndarray) -> ChunkDataset:
        """Utterances ``rows`` of ``packed``, chunked as in training, as this backend reads them."""
        ...

    def run(self, ds: ChunkDataset, ratings: bool = True, clusters: bool = False) -> Outputs: ...


@dataclass(frozen=True)
class TorchBackend:
    """The checkpoint's model in torch, with the Train feature statistics, the label scaler and
    scale, and (when the run clustered) its final clustering."""

    cfg: DictConfig
    model: DeepEmoCluster
    scaler: LabelScaler
    scale: tuple[float, float]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    projection: Projection | None
    centroids: np.ndarray | None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> TorchBackend:
        cfg, model = checkpoint.restore_model()
        space = checkpoint.clusters
        return cls(
            cfg,
            model,
            checkpoint.scaler,
            checkpoint.rating_range,
            checkpoint.feature_mean,
            checkpoint.feature_std,
            None if space is None else space.projection,
            None if space is None else space.centroids,
        )

    @property
    def clustered(self) -> bool:
        return self.centroids is not None

    def dataset(self, packed: PackedFeatures, rows: np.ndarray) -> ChunkDataset:
        """Normalised exactly as in training."""
        return ChunkDataset.for_rows(
            packed, rows, self.feature_mean, self.feature_std, self.cfg.chunking
        )

    def run(self, ds: ChunkDataset, ratings: bool = True, clusters: bool = False) -> Outputs:
        batch, out = self.cfg.train.eval_batch_chunks, Outputs()
        if ratings:
            z = predict_utterances(self.model, ds, batch, _CPU)
            out = replace(out, ratings=np.clip(self.scaler.restore(z), *self.scale))
        if clusters:
            ids, dist = assign(
                self.projection(embed_chunks(self.model, ds, batch, _CPU)), self.centroids
            )
            shape = (len(ds), ds.n_chunks)
            out = replace(
                out, chunk_clusters=ids.reshape(shape), chunk_distances=dist.reshape(shape)
            )
        return out


@dataclass(frozen=True)
class Predictor:
    """The run's config and a backend: audio files in, one output row per file out."""

    cfg: DictConfig
    backend: Backend

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> Predictor:
        backend = TorchBackend.from_checkpoint(checkpoint)
        return cls(backend.cfg, backend)

    @classmethod
    def from_onnx(cls, path: str | Path) -> Predictor:
        """An exported model (``python -m deepemocluster.export``) run by onnxruntime."""
        from deepemocluster.serving.onnx_backend import (
            OnnxBackend,  # onnxruntime loads only when asked
        )

        backend = OnnxBackend.load(path)
        return cls(backend.cfg, backend)

    @property
    def attributes(self) -> list[str]:
        return list(self.cfg.model.attributes)

    @property
    def columns(self) -> list[str]:
        return output_columns(self.attributes)

    def dataset(self, packed: PackedFeatures, rows: np.ndarray) -> ChunkDataset:
        return self.backend.dataset(packed, rows)

    def ratings(self, ds: ChunkDataset) -> np.ndarray:
        """(n, n_attributes) predictions on the rating scale (clipped to it)."""
        return self.backend.run(ds).ratings

    def clusters(self, ds: ChunkDataset) -> tuple[np.ndarray, np.ndarray]:
        """(n,) cluster of each utterance (majority vote of its chunks) and the mean distance of
        the voting chunks to that centroid, in the final clustering's projected space."""
        if not self.backend.clustered:
            raise CheckpointError("the checkpoint has no clustering (trained without clusters)")
        out = self.backend.run(ds, ratings=False, clusters=True)
        return utterance_clusters(out.chunk_clusters, out.chunk_distances)

    def predict(
        self, paths: Iterable[str | Path], batch_files: int = BATCH_FILES, segment: str = "auto"
    ) -> Iterator[dict]:
        """The rows of each path, in path order: a row per segment when ``segment`` cuts the file
        (``timeline.py``), then its ``whole-file`` row; ``batch_files`` files or segments are
        rated at a time."""
        check_mode(segment)
        settings = SegmentSettings.from_config(self.cfg.segment)
        jobs = (plan_file(str(p), segment, settings) for p in paths)
        yield from rows_in_order(jobs, self._rate, self.attributes, batch_files)

    def _rate(self, spans: list[AudioSpan]) -> list[dict]:
        """One row per file or segment: duration, ratings, cluster (and its distance), error."""
        rows = [dict.fromkeys(self.columns) | {"path": s.path, "error": ""} for s in spans]
        settings = FeatureSettings.from_config(self.cfg.features)
        features = []
        for row, span in zip(rows, spans, strict=True):
            try:
                features.append((row, settings.compute(span.path, span.start_s, span.end_s)))
            except AudioError as e:
                row["error"] = e.reason
        if not features:
            return rows
        # the batch as an in-memory packed store: the same chunking and normalisation as training
        offsets = np.cumsum([0] + [len(f) for _, f in features], dtype=np.int64)
        packed = PackedFeatures("predict", np.concatenate([f for _, f in features]), offsets)
        ds = self.dataset(packed, np.arange(len(features)))
        out = self.backend.run(ds, clusters=self.backend.clustered)
        if self.backend.clustered:
            clusters, distances = utterance_clusters(out.chunk_clusters, out.chunk_distances)
        hop_s = settings.hop_length / settings.sample_rate
        for i, (row, feats) in enumerate(features):
            # librosa centres frames: n frames cover (n − 1) to n hops; report the midpoint
            row["duration_s"] = round((len(feats) - 0.5) * hop_s, 3)
            row |= {a: float(out.ratings[i, j]) for j, a in enumerate(self.attributes)}
            if self.backend.clustered:
                row["cluster"], row["cluster_distance"] = int(clusters[i]), float(distances[i])
        return rows


def load_state(model_ref: str, tracking_uri: str = "") -> Checkpoint:
    """Checkpoint file ``model_ref``, or the best checkpoint of MLflow run ``model_ref``
    (anything that looks like a path is a file: a typo then says "not found", not "no such run")."""
    path = Path(model_ref)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return Checkpoint.load(path)
    return Checkpoint.load(download_checkpoint(resolve_uri(tracking_uri, "runs"), model_ref))


def audio_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Files as given (any suffix: a wrong one is reported per file), folders recursively
    (audio suffixes only, sorted), lazily so a huge tree starts producing rows at once."""
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(AUDIO_SUFFIXES):
                    yield Path(folder) / name


def write_csv(rows: Iterable[dict], columns: list[str], out: Path) -> tuple[int, int]:
    """Stream rows to ``out`` (flushed per row); returns (files, files without a rating): the
    ``whole-file`` rows, one per file, and those of them with an error."""
    n = failed = 0
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
            f.flush()
            if row["segment"] == WHOLE_FILE:
                n, failed = n + 1, failed + bool(row["error"])
    return n, failed


def _cell(value: object) -> object:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", required=True, help="MLflow run id or checkpoint file; with onnx an .onnx file"
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: a model from python -m deepemocluster.export, run by onnxruntime (CPU)",
    )
    parser.add_argument("paths", nargs="+", help="audio files and/or folders (recursive)")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument(
        "--batch-files", type=int, default=BATCH_FILES, help="files or segments rated at a time"
    )
    parser.add_argument(
        "--segment",
        choices=SEGMENT_MODES,
        default="auto",
        help="cut recordings into speaking turns (one row each, then a whole-file row): auto = "
        "files longer than the model's segment.max_s",
    )
    parser.add_argument(
        "--timeline", type=Path, help="folder for one PNG per file: ratings and clusters over time"
    )
    parser.add_argument(
        "--tracking-uri", default="", help="default: MLFLOW_TRACKING_URI, else runs/mlflow.db"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def work() -> int:
        if args.backend == "onnx":
            predictor = Predictor.from_onnx(args.model)
        else:
            predictor = Predictor.from_checkpoint(load_state(args.model, args.tracking_uri))
        rows = predictor.predict(audio_files(args.paths), max(1, args.batch_files), args.segment)
        if args.timeline:
            timelines = TimelineWriter(args.timeline, predictor.attributes, plots.timeline)
            rows = timelines(rows)
        n, failed = write_csv(rows, predictor.columns, args.out)
        log.info("%d files, %d failed (see the error column): %s", n, failed, args.out)
        if args.timeline:
            log.info("%d timelines in %s", len(timelines.written), args.timeline)
        if n == failed:
            log.error("no file could be predicted")
            return 1
        return 0

    return exit_code(work, output=args.out)
