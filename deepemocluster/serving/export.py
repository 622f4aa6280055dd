"""``python -m deepemocluster.export RUN_ID|CHECKPOINT --out model.onnx``: the model as ONNX.

The graph takes a batch of raw (un-normalised) feature chunks, any multiple of the run's chunks
per utterance, and does everything that follows the feature extraction: the Train feature
normalisation, the encoder and regressor, the mean over each utterance's chunks, the label
de-normalisation and the clip to the rating scale, and (when the run clustered) each chunk's
nearest centroid of the final clustering. The feature and chunking settings travel in the file's
metadata, so ``predict --backend onnx`` needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from deepemocluster.config import to_yaml
from deepemocluster.data.features import feature_settings
from deepemocluster.runtime.cli import exit_code
from deepemocluster.serving.backend import (
    CLUSTER,
    DISTANCE,
    INPUTS,
    META_PREFIX,
    RATINGS,
    TorchBackend,
    load_checkpoint,
)

log = logging.getLogger("deepemocluster")
OPSET = 18


def _buffer(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class InferenceGraph(nn.Module):
    """What the ONNX file computes, written in torch so that it is exported, not re-implemented.

    ``features`` (B, frames, n_mels) raw chunks, B a multiple of C chunks per utterance, and
    ``valid_frames`` (B,): frames past it are padding. Returns the (B / C, n_attributes) ratings,
    and with a clustering each chunk's nearest centroid (B,) and its distance (B,).
    """

    def __init__(self, backend: TorchBackend) -> None:
        super().__init__()
        model, c = backend.model, backend.cfg.chunking
        self.model, self.cluster = model, model.cluster
        self.n_chunks, self.clip = int(c.n_chunks), float(c.clip)
        self.low, self.high = backend.scale
        self.register_buffer("feature_mean", _buffer(backend.feature_mean))
        self.register_buffer("feature_std", _buffer(backend.feature_std))
        self.register_buffer("label_mean", _buffer(backend.scaler.mean))
        self.register_buffer("label_std", _buffer(backend.scaler.std))
        self.register_buffer("frame_index", torch.arange(int(c.frames)))
        self.clustered = backend.clustered
        if self.clustered:
            p = backend.projection
            self.l2 = p.l2_normalize
            self.project = p.matrix is not None
            if self.project:
                self.register_buffer("projection_matrix", _buffer(p.matrix))
                self.register_buffer("projection_bias", _buffer(p.bias))
            self.register_buffer("centroids", _buffer(backend.centroids))

    def forward(self, features: torch.Tensor, valid_frames: torch.Tensor):
        x = (features - self.feature_mean) / self.feature_std
        keep = self.frame_index[None, :] < valid_frames[:, None]
        x = torch.where(keep[:, :, None], x, 0.0)  # padding is exactly 0, as in training
        x = torch.where(torch.isnan(x), 0.0, x).clamp(-self.clip, self.clip)
        h, z = self.model.equal_utterances(x, self.n_chunks)
        ratings = (z * self.label_std + self.label_mean).clamp(self.low, self.high)
        if not self.clustered:
            return ratings
        e = self.cluster.embed(h)
        if self.project:
            e = e @ self.projection_matrix.T + self.projection_bias
        if self.l2:
            e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
        c = self.centroids
        sq = (e * e).sum(1, keepdim=True) - 2.0 * e @ c.T + (c * c).sum(1)[None, :]
        best, ids = sq.min(dim=1)
        return ratings, ids, best.clamp_min(0.0).sqrt()


def metadata(backend: TorchBackend) -> dict[str, str]:
    """The ONNX metadata: what turns audio into the graph's input, and what comes out."""
    cfg = backend.cfg
    c = cfg.chunking
    entries = {
        "features": asdict(feature_settings(cfg)),
        "chunking": {"n_chunks": c.n_chunks, "frames": c.frames, "clip": c.clip},
        "attributes": list(cfg.model.attributes),
        "rating_range": list(backend.scale),
        "clusters": len(backend.centroids) if backend.clustered else 0,
        "inputs": list(INPUTS),
    }
    meta = {META_PREFIX + k: json.dumps(v) for k, v in entries.items()}
    meta[META_PREFIX + "config"] = to_yaml(cfg)
    return meta


def export(backend: TorchBackend, out: Path) -> Path:
    """Write the ONNX file (weights inside it) and return its path."""
    graph = InferenceGraph(backend).eval()
    c, n_mels = backend.cfg.chunking, len(backend.feature_mean)
    example = (
        torch.randn(2 * c.n_chunks, c.frames, n_mels),
        torch.full((2 * c.n_chunks,), c.frames),
    )
    batch = c.n_chunks * torch.export.Dim("utterances", min=1)
    outputs = [RATINGS, CLUSTER, DISTANCE] if graph.clustered else [RATINGS]
    # torch warns about every torchvision operator it cannot register: none is in this model
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # the exporter's progress notes are not the user's concern
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            example,
            dynamo=True,
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=OPSET,
            verbose=False,
        )
    model = program.model_proto
    for key, value in metadata(backend).items():
        model.metadata_props.add(key=key, value=value)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.export", description=__doc__.split("\n")[0]
    )
    parser.add_argument("model", help="MLflow run id, or a checkpoint file")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument(
        "--tracking-uri", default="", help="default: MLFLOW_TRACKING_URI, else runs/mlflow.db"
    )
    args = parser.parse_args(argv)
    # the exporter's libraries log every graph rewrite at INFO: only ours at INFO
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)

    def work() -> None:
        backend = TorchBackend.from_checkpoint(load_checkpoint(args.model, args.tracking_uri))
        out = export(backend, args.out)
        log.info("wrote %s (%.1f MiB)", out, out.stat().st_size / 2**20)

    return exit_code(work, output=args.out)
