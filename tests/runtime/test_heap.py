"""release_free_heap hands the heap's free pages back to the system, keep_freed_heap keeps freed
memory for reuse until then, and phases wrapped in releases_free_heap keep their results."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from deepemocluster.runtime.heap import keep_freed_heap, release_free_heap, releases_free_heap


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_stays_resident_for_reuse_until_the_heap_is_released():
    assert keep_freed_heap()  # process-wide, as in a training process
    # 120 MiB of 1 MiB heap blocks, freed from the top down: more than glibc's default trim
    # threshold (64 MiB at most) would give back at once, less than the raised one
    blocks = [np.ones(2**17) for _ in range(120)]
    before = anonymous_rss_mib()
    del blocks
    kept = anonymous_rss_mib()
    assert before - kept < 20
    release_free_heap()
    assert kept - anonymous_rss_mib() > 80


def test_a_wrapped_phase_returns_its_result_and_keeps_its_name():
    @releases_free_heap
    def phase(x: int, *, y: int) -> int:
        return x + y

    assert phase(2, y=3) == 5
    assert phase.__name__ == "phase"
