"""Handing the C heap's free memory back to the system at the end of each phase of an epoch.

glibc's malloc keeps the memory freed tensors leave in its heap, for reuse. The phases of an
epoch allocate different mixes of sizes (embedding batches, k-means, training micro-batches,
evaluation batches), so the holes one phase leaves are not all reused by the next, and the
resident set grows by whatever the earlier phases left behind. ``malloc_trim(0)`` returns every
free page of the heap, which lowers the peak of a ``paper.yaml`` epoch by about 100 MiB
(docs/decisions.md). Where the C library has no ``malloc_trim`` (musl, macOS) nothing happens.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_free_heap() -> None:
    """Return the heap's free pages to the system (glibc), or do nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def releases_free_heap(phase: Callable[P, R]) -> Callable[P, R]:
    """``phase``, followed by ``release_free_heap``."""

    @functools.wraps(phase)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        result = phase(*args, **kwargs)
        release_free_heap()
        return result

    return run
