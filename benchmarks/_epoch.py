"""Where one ``Trainer.run_epoch`` spends its time, from what the trainer reports through its
hooks (phases, steps) and a ``ChunkDataset`` that times its reads: chunk reads, embedding,
k-means, training steps, Development (``train_throughput.py``, ``paper_epoch.py``, ``scale.py``)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import replace

import torch
from omegaconf import DictConfig

from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.training.data import TrainingData
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.trainer import Trainer

# the trainer's phase names → the benchmarks' (and their JSON's) names
PHASE_NAMES = {"evaluate": "dev"}


class EpochProfile(Hooks):
    """Where one epoch's time goes, from what the trainer reports: its phases (``embed``,
    ``kmeans``, ``train``, ``evaluate``), the end of each training step, and (through
    ``TimedChunks``) every chunk read, attributed afterwards to the phase it fell in."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []  # (name, start, end)
        self.step_ends: list[float] = []
        self.reads: list[tuple[float, float, int]] = []  # (start, seconds, chunks)

    def on_phase(self, name: str, seconds: float) -> None:
        end = time.perf_counter()
        self.phases.append((PHASE_NAMES.get(name, name), end - seconds, end))

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        self.step_ends.append(time.perf_counter())

    def seconds(self) -> dict[str, float]:
        """Seconds per phase, and ``read/<phase>`` for the reads inside it."""
        out: dict[str, float] = {}
        for name, start, end in self.phases:
            out[name] = out.get(name, 0.0) + end - start
        for name, read_s, _ in self._attributed_reads():
            out[f"read/{name}"] = out.get(f"read/{name}", 0.0) + read_s
        return out

    def chunks_read(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, _, chunks in self._attributed_reads():
            out[name] = out.get(name, 0) + chunks
        return out

    def _attributed_reads(self) -> Iterator[tuple[str, float, int]]:
        for began, read_s, chunks in self.reads:  # reads outside every phase (a warm-up) not
            for name, start, end in self.phases:
                if start <= began <= end:
                    yield name, read_s, chunks
                    break


class TimedChunks(ChunkDataset):
    """A ChunkDataset whose ``chunk_batch`` reads are timed into an ``EpochProfile``."""

    profile: EpochProfile

    @classmethod
    def wrap(cls, ds: ChunkDataset, profile: EpochProfile) -> TimedChunks:
        timed = copy.copy(ds)
        timed.__class__ = cls
        timed.profile = profile
        return timed

    def chunk_batch(self, ids):
        began = time.perf_counter()
        out = super().chunk_batch(ids)
        self.profile.reads.append((began, time.perf_counter() - began, len(ids)))
        return out


def profiled_trainer(
    cfg: DictConfig, data: TrainingData, device: torch.device
) -> tuple[Trainer, EpochProfile]:
    """A trainer whose epochs ``profile_epoch`` can take apart."""
    profile = EpochProfile()
    timed = replace(
        data, train=TimedChunks.wrap(data.train, profile), dev=TimedChunks.wrap(data.dev, profile)
    )
    return Trainer(cfg, timed, device, hooks=[profile]), profile


def profile_epoch(trainer: Trainer, profile: EpochProfile) -> dict:
    """Seconds of one ``trainer.run_epoch()`` by part. With ``train.max_steps_per_pass``, the
    training pass (its steps and reads) is extrapolated from the steps run to the full epoch and
    flagged so."""
    began = time.perf_counter()
    metrics = trainer.run_epoch()
    measured = time.perf_counter() - began
    s = profile.seconds()
    batches_run = len(profile.step_ends)
    batches_full = sum(-(-len(ids) // trainer.batch_chunks) for _, ids in trainer.cluster_stages())
    missing = batches_full - batches_run
    step_s = steady_step_seconds(profile.step_ends, s.get("train", 0.0))
    train_s = s.get("train", 0.0) + step_s * missing  # the full training pass, reads included
    read_train_s = s.get("read/train", 0.0) * batches_full / max(1, batches_run)
    parts = {
        "data_loading": sum(v for k, v in s.items() if k.startswith("read/") and k != "read/train")
        + read_train_s,
        "embedding_forward": s.get("embed", 0.0) - s.get("read/embed", 0.0),
        "kmeans": s.get("kmeans", 0.0),
        "training_steps": train_s - read_train_s,
        "dev_forward": s.get("dev", 0.0) - s.get("read/dev", 0.0),
    }
    phases = sum(s.get(k, 0.0) for k in ("embed", "kmeans", "train", "dev"))
    parts["other"] = max(0.0, measured - phases)
    total = sum(parts.values())
    return {
        "epoch_s": total,
        "measured_s": measured,
        "extrapolated": missing > 0,
        "train_step_s": step_s,
        "batches_run": batches_run,
        "batches_full": batches_full,
        "parts_s": parts,
        "shares": {k: v / total for k, v in parts.items()},
        "read_s": {k.removeprefix("read/"): v for k, v in s.items() if k.startswith("read/")},
        "chunks_read": profile.chunks_read(),
        "cluster_empty": metrics.get("cluster/empty"),
    }


def steady_step_seconds(step_ends: list[float], train_s: float) -> float:
    """Median interval between the ends of consecutive steps (a read + a step), which leaves
    out the first step's share of the DataLoader's start; the plain mean when too few ran."""
    gaps = sorted(b - a for a, b in zip(step_ends, step_ends[1:], strict=False))
    if len(gaps) >= 2:
        return gaps[len(gaps) // 2]
    return train_s / max(1, len(step_ends))
