"""Forward passes shared by training, evaluation and prediction (no autograd, large batches)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.config import load_config
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.metrics import ccc
from deepemocluster.model import DeepEmoCluster, build_model


@dataclass(frozen=True)
class LabelScaler:
    """Train mean/std of each attribute: targets are z-normalised for training, mapped back to 1–7."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, ratings: np.ndarray) -> LabelScaler:
        return cls(ratings.mean(0), np.maximum(ratings.std(0), 1e-6))

    def normalise(self, ratings: np.ndarray) -> np.ndarray:
        return (ratings - self.mean) / self.std

    def restore(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast (``train.amp``): no loss scaling is needed, unlike float16, and CPUs with
    AVX512-BF16/AMX run the convolutions about twice as fast (docs/performance.md)."""
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


@torch.inference_mode()
def predict_utterances(
    model: DeepEmoCluster, ds: ChunkDataset, batch_chunks: int, device: torch.device
) -> np.ndarray:
    """(n_utterances, n_attributes) z-scale predictions: the mean of each utterance's chunk outputs."""
    model.eval()
    preds = [
        model(ds.chunk_batch(ids)[0].to(device))[1].float().cpu().numpy()
        for ids in _batches(
            ds.n_total_chunks, max(ds.n_chunks, batch_chunks // ds.n_chunks * ds.n_chunks)
        )
    ]
    chunk_preds = np.concatenate(preds)
    return chunk_preds.reshape(len(ds), ds.n_chunks, -1).mean(axis=1)


def ccc_report(
    ratings: np.ndarray, predictions: np.ndarray, attributes: list[str]
) -> dict[str, float]:
    """CCC per attribute on the 1–7 scale, plus their mean under ``ccc_mean``."""
    report = {f"ccc_{a}": ccc(ratings[:, j], predictions[:, j]) for j, a in enumerate(attributes)}
    report["ccc_mean"] = float(np.mean(list(report.values())))
    return report


def restore_model(state: dict) -> tuple[DictConfig, DeepEmoCluster, LabelScaler]:
    """Config, model (eval mode, CPU) and label scaler from a training checkpoint."""
    cfg = load_config(text=state["config_yaml"])
    model = build_model(cfg, int(state["feature_mean"].numel()))
    model.load_state_dict(state["model"])
    scaler = LabelScaler(state["label_mean"].numpy(), state["label_std"].numpy())
    return cfg, model.eval(), scaler
