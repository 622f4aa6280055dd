"""An exported model (``python -m deepemocluster.export``) run by onnxruntime on the CPU.

The only onnxruntime user. It is a prediction backend like the torch one: the model (``api.py``)
decodes, extracts features and chunks them with the same code; this backend hands the raw chunks
to the graph, which normalises them itself (deepemocluster/serving/export.py). The graph gives
ratings and clusters, not embeddings: ``embed`` needs the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from omegaconf import DictConfig

from deepemocluster.config import load_config
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.features import PackedFeatures
from deepemocluster.errors import CheckpointError, DeepEmoClusterError
from deepemocluster.serving.backend import (
    CLUSTER,
    DISTANCE,
    INPUTS,
    META_PREFIX,
    RATINGS,
    Outputs,
)


@dataclass(frozen=True)
class OnnxBackend:
    path: Path
    cfg: DictConfig
    session: ort.InferenceSession
    clustered: bool

    @classmethod
    def load(cls, path: str | Path, threads: int = 0) -> OnnxBackend:
        """Open ``path``; ``threads`` intra-op threads (0: torch's current setting)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for unparsable or invalid graphs
            detail = str(e).strip().splitlines()
            raise CheckpointError(
                f"{path}: not a readable ONNX model ({detail[0][:300] if detail else type(e).__name__})"
            ) from e
        meta = session.get_modelmeta().custom_metadata_map
        if META_PREFIX + "config" not in meta:
            raise CheckpointError(
                f"{path}: an ONNX model without deepemocluster metadata "
                "(export it with python -m deepemocluster.export)"
            )
        names = [i.name for i in session.get_inputs()]
        if names != list(INPUTS):
            raise CheckpointError(f"{path}: graph inputs {names}, expected {list(INPUTS)}")
        try:
            cfg = load_config(text=meta[META_PREFIX + "config"])
        except DeepEmoClusterError as e:
            raise CheckpointError(f"{path}: its config metadata is unusable ({e})") from e
        clustered = json.loads(meta.get(META_PREFIX + "clusters", "0")) > 0
        return cls(path, cfg, session, clustered)

    def dataset(self, packed: PackedFeatures, rows: np.ndarray) -> ChunkDataset:
        """Raw chunks (padding zeroed, NaN → 0): the graph normalises with the Train statistics."""
        n_mels = packed.frames.shape[1]
        zero, one = np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
        return ChunkDataset.for_rows(packed, rows, zero, one, self.cfg.chunking, clip=np.inf)

    def run(
        self,
        ds: ChunkDataset,
        ratings: bool = True,
        clusters: bool = False,
        embeddings: bool = False,
    ) -> Outputs:
        if embeddings:
            raise CheckpointError(
                f"{self.path}: an exported ONNX model gives ratings and clusters, not "
                "embeddings: load the run id or the checkpoint to embed"
            )
        wanted = ([RATINGS] if ratings else []) + ([CLUSTER, DISTANCE] if clusters else [])
        step = max(1, self.cfg.train.eval_batch_chunks // ds.n_chunks) * ds.n_chunks
        parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for start in range(0, ds.n_total_chunks, step):
            ids = np.arange(start, min(start + step, ds.n_total_chunks))
            chunks = ds.chunk_batch(ids)[0].numpy()
            utt, c = np.divmod(ids, ds.n_chunks)
            valid = np.minimum(ds.frames, ds.lengths[utt] - ds.starts[utt, c])
            feeds = {INPUTS[0]: chunks, INPUTS[1]: valid.astype(np.int64)}
            for name, value in zip(wanted, self.session.run(wanted, feeds), strict=True):
                parts[name].append(value)
        out = {name: np.concatenate(values) for name, values in parts.items()}
        shape = (len(ds), ds.n_chunks)
        return Outputs(
            ratings=out.get(RATINGS),
            chunk_clusters=out[CLUSTER].astype(np.int64).reshape(shape) if clusters else None,
            chunk_distances=out[DISTANCE].reshape(shape) if clusters else None,
        )
