"""Handing the C heap's free memory back to the system at the end of each phase of an epoch.

glibc's malloc keeps the memory freed tensors leave in its heap, for reuse. The phases of an
epoch allocate different mixes of sizes (embedding batches, k-means, training micro-batches,
evaluation batches), so the holes one phase leaves are not all reused by the next, and the
resident set grows by whatever the earlier phases left behind. ``malloc_trim(0)`` returns every
free page of the heap, which lowers the peak of a ``paper.yaml`` epoch by about 100 MiB
(docs/decisions.md). Where the C library has no ``malloc_trim`` (musl, macOS) nothing happens.

Within a phase the opposite holds: a training step or an embedding batch frees and allocates the
same sizes again and again. glibc's default gives freed memory at the top of the heap back as
soon as more than about 64 MiB is free there, so every micro-batch faults its activations in
anew. ``keep_freed_heap`` raises that trim threshold: within a phase freed memory is reused, and
the phase's end still hands it all back.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


# mallopt parameters (<malloc.h>)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# blocks above this are mmapped and unmapped when freed: the most glibc accepts on 64 bits, and
# what its own dynamic threshold would grow to; fixed, so the trim threshold stays as set
MMAP_THRESHOLD = 32 << 20
# free memory at the top of the heap kept for reuse (each phase ends with a trim anyway)
TRIM_THRESHOLD = 1 << 30


@functools.cache
def _libc(name: str) -> Callable[..., int] | None:
    return getattr(ctypes.CDLL(None), name, None)


def keep_freed_heap() -> bool:
    """Keep up to ``TRIM_THRESHOLD`` of freed heap memory for reuse until ``release_free_heap``
    (glibc; a user's own malloc settings in the environment win). On an AVX2-only CPU this made
    float32 training steps about 1.4x and embedding batches 1.5x faster (docs/performance.md).
    Returns whether the settings were applied."""
    mallopt = _libc("mallopt")
    user_set = any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"))
    if mallopt is None or user_set or "malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def release_free_heap() -> None:
    """Return the heap's free pages to the system (glibc), or do nothing."""
    trim = _libc("malloc_trim")
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
