"""The Python API: a trained model from an MLflow run id, a checkpoint file or an exported ONNX
file, that rates audio files or arrays and embeds them.

``load(source).predict(inputs)`` is a DataFrame of exactly the rows of ``python -m
deepemocluster.predict``: per file arousal/valence/dominance on the labels' scale (clipped to it),
the cluster of the run's final clustering (majority vote of the file's chunks) with the mean
distance of the voting chunks to its centroid, and the duration; a long recording (``segment``
``auto``: longer than ``segment.max_s``) gives a row per speaking turn and a ``whole-file`` row
(``timeline.py``). ``Model.rows`` is the one prediction code path: the CLI (``predict.py``), the
MLflow model (``pyfunc.py``) and so ``mlflow models serve`` are thin layers over it. A file that
cannot be used gets its reason in the ``error`` column and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.clustering import utterance_clusters
from deepemocluster.data.audio import AudioSpan
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.features import PackedFeatures, feature_settings
from deepemocluster.data.segments import SegmentSettings
from deepemocluster.errors import AudioError, CheckpointError
from deepemocluster.serving.backend import Backend, TorchBackend, load_checkpoint
from deepemocluster.serving.embeddings import LEVELS, Embeddings, embedding_rows
from deepemocluster.serving.inputs import AudioInput, InputError, as_paths, audio_files
from deepemocluster.serving.timeline import (
    WHOLE_FILE,
    check_mode,
    output_columns,
    output_types,
    plan_file,
    rows_in_order,
)

BATCH_FILES = 32
BACKENDS = ("torch", "onnx")
ERRORS = ("row", "raise")
# nullable columns: a failed file's numbers are missing (<NA>; JSON null when served), not NaN
DTYPES = {"double": "Float64", "long": "Int64", "string": object}


@dataclass(frozen=True)
class Features:
    """The features of a batch of spans, as one in-memory dataset chunked as in training."""

    errors: list[str]  # per span: "" or why it has no features
    ok: list[int]  # the spans with features, in order: utterance i of ds is span ok[i]
    ds: ChunkDataset | None  # None: no span had features
    hop_s: float

    def duration_s(self, i: int) -> float:
        """Of utterance i: librosa centres frames, n frames cover (n − 1) to n hops; the midpoint."""
        return round((int(self.ds.lengths[i]) - 0.5) * self.hop_s, 3)


@dataclass(frozen=True)
class Model:
    """The run's config and a backend (torch, or ONNX): audio in, rows or embeddings out."""

    cfg: DictConfig
    backend: Backend

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> Model:
        backend = TorchBackend.from_checkpoint(checkpoint)
        return cls(backend.cfg, backend)

    @classmethod
    def from_onnx(cls, path: str | Path) -> Model:
        """An exported model (``python -m deepemocluster.export``) run by onnxruntime."""
        from deepemocluster.serving.onnx_backend import OnnxBackend  # onnxruntime only if asked

        backend = OnnxBackend.load(path)
        return cls(backend.cfg, backend)

    @property
    def attributes(self) -> list[str]:
        return list(self.cfg.model.attributes)

    @property
    def columns(self) -> list[str]:
        return output_columns(self.attributes)

    def predict(
        self,
        inputs: AudioInput | Iterable[AudioInput],
        sample_rate: int | None = None,
        segment: str = "auto",
        batch_files: int = BATCH_FILES,
        errors: str = "row",
    ) -> pd.DataFrame:
        """The CLI's rows of audio files, folders (recursively) and arrays (``sample_rate`` Hz,
        ``(samples,)`` or ``(samples, channels)``), in input order. ``segment``: ``auto``,
        ``always`` or ``never`` cut recordings into turns (as ``--segment``); ``errors="raise"``
        raises the first unusable input's AudioError instead of giving it an error row."""
        if errors not in ERRORS:
            raise InputError(f"errors must be one of {', '.join(ERRORS)}, got {errors!r}")
        check_mode(segment)
        with as_paths(inputs, sample_rate) as (paths, names):
            rows = []
            for row in self.rows(paths, batch_files, segment):
                row["path"] = names.get(row["path"], row["path"])
                if row["error"] and errors == "raise":
                    where = "" if row["segment"] == WHOLE_FILE else f"segment {row['segment']}"
                    raise AudioError(row["path"], row["error"], where)
                rows.append(row)
        types = output_types(self.attributes)
        return pd.DataFrame(rows, columns=self.columns).astype({c: DTYPES[types[c]] for c in types})

    def rows(
        self,
        paths: str | PathLike | Iterable[str | PathLike],
        batch_files: int = BATCH_FILES,
        segment: str = "auto",
    ) -> Iterator[dict]:
        """The rows of each file (folders: their audio files), in order, as they are ready: a row
        per segment when ``segment`` cuts the file, then its ``whole-file`` row; ``batch_files``
        files or segments are rated at a time, so any number of files fits in memory."""
        check_mode(segment)
        settings = SegmentSettings.from_config(self.cfg.segment)
        paths = [paths] if isinstance(paths, str | PathLike) else paths  # one file, not its letters
        jobs = (plan_file(str(p), segment, settings) for p in audio_files(paths))
        yield from rows_in_order(jobs, self._rate, self.attributes, max(1, batch_files))

    def embed(
        self,
        inputs: AudioInput | Iterable[AudioInput],
        sample_rate: int | None = None,
        level: str = "chunk",
        segment: str = "auto",
        batch_files: int = BATCH_FILES,
    ) -> Embeddings:
        """The auxiliary head's embeddings (the cluster head's, which the run's k-means clustered,
        or the Siamese head's) of each chunk or each file or segment (``level="utterance"``: the
        mean of its chunks' vectors), with the cluster of the run's final clustering: every
        chunk's nearest centroid, an utterance's the vote of its chunks as in ``predict``. A model
        without a clustering (a Siamese run) gives vectors and no cluster; one without an
        auxiliary head, or an ONNX file (which holds no embeddings), raises CheckpointError."""
        if level not in LEVELS:
            raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        check_mode(segment)
        settings = SegmentSettings.from_config(self.cfg.segment)
        with as_paths(inputs, sample_rate) as (paths, names):
            jobs = [plan_file(str(p), segment, settings) for p in audio_files(paths)]
            spans = [job.span(i) for job in jobs for i in range(job.n_spans)]
            step = max(1, batch_files)
            done = [r for a in range(0, len(spans), step) for r in self._embed(spans[a : a + step])]
            return embedding_rows(jobs, done, names, level)

    # --- a corpus that already has features (analysis) -----------------------------------------
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

    # --- a batch of spans ---------------------------------------------------------------------
    def _features(self, spans: list[AudioSpan]) -> Features:
        """Decode each span and compute its features (an unusable one gets its reason), then the
        batch as an in-memory packed store: the same chunking and normalisation as training."""
        settings = feature_settings(self.cfg)
        errors, features = [], []
        for span in spans:
            try:
                features.append(settings.compute(span.path, span.start_s, span.end_s))
                errors.append("")
            except AudioError as e:
                errors.append(e.reason)
        ok = [i for i, e in enumerate(errors) if not e]
        hop_s = settings.frame_s
        if not features:
            return Features(errors, ok, None, hop_s)
        offsets = np.cumsum([0] + [len(f) for f in features], dtype=np.int64)
        packed = PackedFeatures("predict", np.concatenate(features), offsets)
        return Features(errors, ok, self.dataset(packed, np.arange(len(features))), hop_s)

    def _rate(self, spans: list[AudioSpan]) -> list[dict]:
        """One row per span: duration, ratings, cluster (and its distance), error."""
        f = self._features(spans)
        rows = [
            dict.fromkeys(self.columns) | {"path": s.path, "error": e}
            for s, e in zip(spans, f.errors, strict=True)
        ]
        if f.ds is None:
            return rows
        clustered = self.backend.clustered
        out = self.backend.run(f.ds, clusters=clustered)
        if clustered:
            clusters, distances = utterance_clusters(out.chunk_clusters, out.chunk_distances)
        for i, j in enumerate(f.ok):
            row = rows[j]
            row["duration_s"] = f.duration_s(i)
            row |= {a: float(out.ratings[i, k]) for k, a in enumerate(self.attributes)}
            if clustered:
                row["cluster"], row["cluster_distance"] = int(clusters[i]), float(distances[i])
        return rows

    def _embed(self, spans: list[AudioSpan]) -> list[dict]:
        """Per span: its error, or its chunk vectors (C, d), chunk clusters and distances (C,)
        (None without a clustering), chunk start and end frames (C,) and duration."""
        f = self._features(spans)
        out = [{"error": e} for e in f.errors]
        if f.ds is None:
            return out
        clustered = self.backend.clustered
        got = self.backend.run(f.ds, ratings=False, clusters=clustered, embeddings=True)
        ds = f.ds
        for i, j in enumerate(f.ok):
            ends = np.minimum(ds.starts[i] + ds.frames, ds.lengths[i])
            out[j] |= {
                "vectors": got.chunk_embeddings[i],
                "clusters": got.chunk_clusters[i] if clustered else None,
                "distances": got.chunk_distances[i] if clustered else None,
                "chunk_s": np.stack([ds.starts[i], ends], axis=1) * f.hop_s,
                "duration_s": f.duration_s(i),
            }
        return out


def load(source: str | Path, tracking_uri: str = "", backend: str | None = None) -> Model:
    """The model of MLflow run id ``source`` (its best checkpoint, from the store
    ``tracking_uri``, default MLFLOW_TRACKING_URI, else runs/mlflow.db), of a checkpoint file, or
    of an exported ``.onnx`` file (run by onnxruntime). ``backend`` ``torch`` or ``onnx`` says
    which the file is; by default ``.onnx`` files are ONNX."""
    if not isinstance(source, str | Path) or not str(source).strip():
        raise CheckpointError(
            f"model source {source!r}: expected an MLflow run id, a checkpoint or an .onnx file"
        )
    if backend not in (None, *BACKENDS):
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx" or (backend is None and Path(source).suffix.lower() == ".onnx"):
        return Model.from_onnx(source)
    return Model.from_checkpoint(load_checkpoint(source, tracking_uri))
