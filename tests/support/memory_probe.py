"""What a test can see of this process's memory: resident pages of its memory maps, and the
activations autograd keeps for backward."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def mapped_rss_kib(path: str) -> int:
    """Resident KiB of this process's memory maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # the header line of the next mapping
            inside = line.rstrip().endswith(os.path.realpath(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@contextmanager
def saved_activation_rows(model: torch.nn.Module) -> Iterator[list[int]]:
    """Chunks (leading size) of every 4-D activation autograd saves for backward inside the
    block: the convolutions' inputs and outputs, ``model``'s own weights left out."""
    weights = {p.data_ptr() for p in model.parameters()}
    rows: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4 and t.data_ptr() not in weights:
            rows.append(t.shape[0])
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield rows
