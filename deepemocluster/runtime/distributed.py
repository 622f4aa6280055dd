"""Training under ``torchrun``: the process group and the few collectives an epoch needs.

Started by torchrun (``WORLD_SIZE`` > 1), every rank trains on its slice of each batch under
DistributedDataParallel and embeds a contiguous shard of the training chunks; rank 0 gathers the
embeddings (sizes first, then one padded gather), runs k-means once and broadcasts the
assignments. Only rank 0 talks to MLflow and writes the run folder. A plain ``python -m`` run is
a world of one, where every function here returns its input or does nothing. docs/distributed.md.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; ``size`` 1 when not launched by torchrun."""

    rank: int = 0
    size: int = 1
    comm_device: torch.device = torch.device("cpu")  # where collectives' tensors live

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device, timeout_min: float) -> tuple[World, torch.device]:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA, one GPU per local rank); returns
    the world and the device this rank computes on. Without torchrun: World(), ``device``."""
    if not launched_by_torchrun():
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_min)
        )
    return World(dist.get_rank(), dist.get_world_size(), device), device


def shutdown(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(ids: np.ndarray, world: World) -> np.ndarray:
    """This rank's contiguous part of ``ids`` (sizes differ by at most one between ranks)."""
    return np.array_split(ids, world.size)[world.rank] if world.enabled else ids


def gather_rows(rows: np.ndarray, world: World) -> np.ndarray | None:
    """Every rank's float32 (n_r, d) shard, stacked in rank order on rank 0 (None elsewhere).

    Shapes go round first (an empty shard may not know d), then one gather of shards padded to
    the largest: a single (size × largest, d) buffer on rank 0, compacted in place, so the
    matrix exists once."""
    if not world.enabled:
        return rows
    dev = world.comm_device
    shapes = [torch.zeros(2, dtype=torch.int64, device=dev) for _ in range(world.size)]
    dist.all_gather(shapes, torch.tensor(rows.shape, dtype=torch.int64, device=dev))
    counts = [int(s[0]) for s in shapes]
    largest, width = max(counts), max(int(s[1]) for s in shapes)
    mine = torch.zeros(largest, width, dtype=torch.float32, device=dev)
    if len(rows):
        mine[: len(rows)] = torch.from_numpy(rows)
    if not world.is_main:
        dist.gather(mine, None, dst=0)
        return None
    stacked = torch.empty(world.size * largest, width, dtype=torch.float32, device=dev)
    dist.gather(mine, list(stacked.split(largest)), dst=0)
    out = stacked.cpu().numpy()
    filled = 0
    for rank, count in enumerate(counts):  # shift each shard down over the padding before it
        out[filled : filled + count] = out[rank * largest : rank * largest + count]
        filled += count
    return out[:filled]


def broadcast_array(values: np.ndarray | None, n: int, world: World) -> np.ndarray:
    """Rank 0's int64 array of length ``n`` on every rank."""
    if not world.enabled:
        return values
    buf = (
        torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64)).to(world.comm_device)
        if world.is_main
        else torch.empty(n, dtype=torch.int64, device=world.comm_device)
    )
    dist.broadcast(buf, src=0)
    return buf.cpu().numpy()


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's picklable ``obj`` on every rank (resume state, Development metrics)."""
    if not world.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=world.comm_device)
    return box[0]


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def wrap(model: nn.Module, world: World) -> nn.Module:
    """DDP around ``model`` for one training pass. Building it copies rank 0's parameters and
    buffers to every rank, so a top layer re-created after clustering starts equal everywhere.
    ``find_unused_parameters``: the unlabelled stage never touches the regressor."""
    if not world.enabled:
        return model
    device_ids = [world.comm_device.index] if world.comm_device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def sync_buffers(model: nn.Module, world: World) -> None:
    """Rank 0's BatchNorm statistics everywhere: each rank updated them on its own slices, and the
    sharded embedding pass must run one and the same model on every rank."""
    if world.enabled:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def digest(values: np.ndarray) -> str:
    """Short content hash, logged by every rank so that agreement between ranks can be checked."""
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest()[:12]
