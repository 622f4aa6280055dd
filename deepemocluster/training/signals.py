"""SIGINT/SIGTERM during a run: finish the step in flight, keep the last epoch's checkpoint."""

from __future__ import annotations

import signal
import threading
from typing import Protocol

from deepemocluster.errors import Interrupted


class Interruptible(Protocol):
    interrupt: int | None  # the signal to stop for at the next step or epoch boundary


class StopOnSignals:
    """SIGINT/SIGTERM during the whole run. The first one while a trainer is ``attached`` sets its
    ``interrupt``, which it checks between steps and epochs, so an epoch in flight ends at a step
    boundary; any other raises Interrupted at once. Either way nothing half-written is ever read
    back: checkpoints, feature entries and run files are written to a temporary name and renamed.
    Installed only in the main thread (Python delivers signals there)."""

    def __init__(self) -> None:
        self.attached: Interruptible | None = None
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self.previous = {
                s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
            }
        return self

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = signum
        if first and self.attached is not None:
            self.attached.interrupt = signum
            return
        raise Interrupted(signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
