"""release_free_heap hands the heap's free pages back to the system, and phases wrapped in
releases_free_heap keep their results."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from deepemocluster.heap import release_free_heap, releases_free_heap


def anonymous_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_holes_in_the_heap_go_back_to_the_system():
    # 64 KiB blocks come from the heap, not from mmap; freeing every other one leaves holes
    # between live blocks, which free() alone keeps resident
    blocks = [np.ones(8192) for _ in range(2000)]
    del blocks[::2]
    before = anonymous_rss_mib()
    release_free_heap()
    assert before - anonymous_rss_mib() > 40  # of the 62.5 MiB freed


def test_a_wrapped_phase_returns_its_result_and_keeps_its_name():
    @releases_free_heap
    def phase(x: int, *, y: int) -> int:
        return x + y

    assert phase(2, y=3) == 5
    assert phase.__name__ == "phase"
