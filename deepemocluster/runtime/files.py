"""Atomic file writes: a kill at any moment leaves the previous file or the new one, never a torn one."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from deepemocluster.runtime.faults import failpoint


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before its rename: hidden, per process and thread, in the same
    folder (so the rename is atomic); ``.*.tmp`` files left by a killed process are never read."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(
    path: str | Path,
    content: bytes | str | Callable[[BinaryIO], None],
    point: str | None = None,
) -> None:
    """Write ``content`` (bytes, text, or a function that writes to the open binary file) to a
    temporary file, fsync it, then rename it over ``path``. ``point`` names the failpoint between
    the two (default ``write_<file stem>``; docs/reliability.md)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        failpoint(point or f"write_{path.stem}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
