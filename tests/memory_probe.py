"""What a test can see of this process's memory: resident pages of its memory maps."""

from __future__ import annotations

import os
import re
from pathlib import Path


def mapped_rss_kib(path: str) -> int:
    """Resident KiB of this process's memory maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # the header line of the next mapping
            inside = line.rstrip().endswith(os.path.realpath(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total
