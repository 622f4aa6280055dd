"""Forward passes without autograd, in large batches: embeddings for clustering, predictions."""

from __future__ import annotations

import numpy as np
import torch

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.model import DeepEmoCluster


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast (``train.amp``): no loss scaling is needed, unlike float16, and on CPUs
    with AVX512-BF16/AMX a ``paper.yaml`` epoch runs 1.5x faster (docs/performance.md)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.inference_mode()
def embed_chunks(
    model: DeepEmoCluster,
    ds: ChunkDataset,
    batch_chunks: int,
    device: torch.device,
    ids: np.ndarray | None = None,
    amp: bool = False,
) -> np.ndarray:
    """(len(ids), d) float32 clustering embeddings of chunk ids (default: all, in order), eval
    mode, written into one preallocated array (no per-batch list to concatenate)."""
    model.eval()
    ids = np.arange(ds.n_total_chunks) if ids is None else np.asarray(ids)
    out = np.empty((len(ids), 0), dtype=np.float32)
    for start in range(0, len(ids), batch_chunks):
        batch = ids[start : start + batch_chunks]
        with autocast(device, amp):
            z = model.embed(ds.chunk_batch(batch)[0].to(device))
        z = z.float().cpu().numpy()
        if out.shape[1] != z.shape[1]:  # the head's width is known once the first batch is out
            out = np.empty((len(ids), z.shape[1]), dtype=np.float32)
        out[start : start + len(batch)] = z
    return out


def predict_utterances(
    model: DeepEmoCluster, ds: ChunkDataset, batch_chunks: int, device: torch.device
) -> np.ndarray:
    """(n_utterances, n_attributes) z-scale predictions, in batches of whole utterances: the
    mean of each utterance's chunk predictions, or its attention-pooled prediction
    (``model.pooling``)."""
    return utterance_outputs(model, ds, batch_chunks, device, ("prediction",))["prediction"]


@torch.inference_mode()
def utterance_outputs(
    model: DeepEmoCluster,
    ds: ChunkDataset,
    batch_chunks: int,
    device: torch.device,
    names: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """The model's named z-scale outputs (``names``, default all) for every utterance of
    ``ds``, (n_utterances, n_attributes) each, in batches of whole utterances."""
    model.eval()
    per_batch = max(1, batch_chunks // ds.n_chunks)  # utterances
    parts: dict[str, list[np.ndarray]] = {}
    for first in range(0, len(ds), per_batch):
        n = min(per_batch, len(ds) - first)
        ids = np.arange(first * ds.n_chunks, (first + n) * ds.n_chunks)
        counts = torch.full((n,), ds.n_chunks, device=device)
        out = model.forward_utterances(ds.chunk_batch(ids)[0].to(device), counts).utterances
        for name in names or out:
            parts.setdefault(name, []).append(out[name].float().cpu().numpy())
    return {name: np.concatenate(p) for name, p in parts.items()}
