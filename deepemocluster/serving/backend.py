"""What runs a trained model on chunked features: the checkpoint it comes from, the torch backend,
and the names of the exported ONNX graph.

The pieces that prediction (``api.py``), the ONNX export (``export.py``) and the ONNX backend
(``onnx_backend.py``) all need live here, below them, so that none of them imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.clustering import Projection, assign
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.features import PackedFeatures
from deepemocluster.data.labels import LabelScaler
from deepemocluster.errors import CheckpointError
from deepemocluster.model import DeepEmoCluster
from deepemocluster.serving.inference import embed_chunks, predict_utterances
from deepemocluster.tracking import download_checkpoint, resolve_uri

# The exported graph's inputs and outputs and its metadata keys: export.py writes them,
# onnx_backend.py reads them.
INPUTS = ("features", "valid_frames")
RATINGS, CLUSTER, DISTANCE = "ratings", "chunk_cluster", "chunk_distance"
META_PREFIX = "deepemocluster."
_CPU = torch.device("cpu")


def load_checkpoint(model_ref: str | Path, tracking_uri: str = "") -> Checkpoint:
    """Checkpoint file ``model_ref``, or the best checkpoint of MLflow run ``model_ref`` in the
    store ``tracking_uri`` (default: MLFLOW_TRACKING_URI, else runs/mlflow.db). Anything that
    looks like a path is a file: a typo then says "not found", not "no such run"."""
    path = Path(model_ref)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return Checkpoint.load(path)
    return Checkpoint.load(download_checkpoint(resolve_uri(tracking_uri, "runs"), str(model_ref)))


@dataclass(frozen=True)
class Outputs:
    """What a backend computes for n utterances of C chunks each (None: not asked for)."""

    ratings: np.ndarray | None = None  # (n, n_attributes) on the rating scale, clipped to it
    chunk_clusters: np.ndarray | None = None  # (n, C) nearest centroid of every chunk
    chunk_distances: np.ndarray | None = None  # (n, C) distance to it, in the projected space
    chunk_embeddings: np.ndarray | None = None  # (n, C, d) the auxiliary head's embeddings


class Backend(Protocol):
    """A trained model that maps chunked features to ratings and clusters (torch, or ONNX)."""

    clustered: bool  # the run's final clustering is part of the model

    def dataset(self, packed: PackedFeatures, rows: np.ndarray) -> ChunkDataset:
        """Utterances ``rows`` of ``packed``, chunked as in training, as this backend reads them."""
        ...

    def run(
        self,
        ds: ChunkDataset,
        ratings: bool = True,
        clusters: bool = False,
        embeddings: bool = False,
    ) -> Outputs: ...


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

    def run(
        self,
        ds: ChunkDataset,
        ratings: bool = True,
        clusters: bool = False,
        embeddings: bool = False,
    ) -> Outputs:
        batch, out = self.cfg.train.eval_batch_chunks, Outputs()
        if ratings:
            z = predict_utterances(self.model, ds, batch, _CPU)
            out = replace(out, ratings=np.clip(self.scaler.restore(z), *self.scale))
        if not (clusters or embeddings):
            return out
        if self.model.cluster is None and self.model.siamese is None:
            raise CheckpointError("the model has no embedding head (model.aux_head=none)")
        e = embed_chunks(self.model, ds, batch, _CPU)
        shape = (len(ds), ds.n_chunks)
        if embeddings:
            out = replace(out, chunk_embeddings=e.reshape(*shape, e.shape[1]))
        if clusters:
            ids, dist = assign(self.projection(e), self.centroids)
            out = replace(
                out, chunk_clusters=ids.reshape(shape), chunk_distances=dist.reshape(shape)
            )
        return out
