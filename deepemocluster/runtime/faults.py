"""Failpoints: a testing aid that delivers a signal to this process at a named point of the code.

``DEEPEMOCLUSTER_FAILPOINT=NAME[:COUNT][:SIGNAL]`` makes the COUNT-th call (default 1st) of
``failpoint(NAME)`` in this process send it SIGNAL (``term`` by default; ``kill``, ``int``,
``stop``, … any ``signal.SIG*`` name). Several specs may be given, separated by commas. Unset, a
failpoint costs one environment lookup. Points (docs/reliability.md): ``feature_write``,
``cluster``, ``train_step``, ``write_checkpoint_last``, ``write_checkpoint_best``, ``mlflow_log``.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "DEEPEMOCLUSTER_FAILPOINT"

_hits: dict[str, int] = {}
_spec_seen = ""


def failpoint(name: str) -> None:
    """Send the configured signal when the spec in ``DEEPEMOCLUSTER_FAILPOINT`` matches."""
    global _spec_seen
    spec = os.environ.get(ENV, "")
    if not spec:
        return
    if spec != _spec_seen:  # a new spec (tests set one per run) counts from zero
        _spec_seen = spec
        _hits.clear()
    wanted = _parse(spec).get(name)
    if not wanted:
        return
    _hits[name] = hit = _hits.get(name, 0) + 1
    for count, signum in wanted:
        if hit == count:
            _deliver(signum)


def reset() -> None:
    """Forget the calls counted so far."""
    _hits.clear()


def _parse(spec: str) -> dict[str, list[tuple[int, signal.Signals]]]:
    out: dict[str, list[tuple[int, signal.Signals]]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, *options = item.split(":")
        count, signum = 1, signal.SIGTERM
        for option in options:
            if option.isdigit():
                count = int(option)
            elif f"SIG{option.upper()}" in signal.Signals.__members__:
                signum = signal.Signals[f"SIG{option.upper()}"]
            else:
                raise ValueError(f"{ENV}={spec!r}: {option!r} is neither a count nor a signal")
        out.setdefault(name, []).append((count, signum))
    return out


def _deliver(signum: signal.Signals) -> None:
    # To this thread when it is the main one, so that a Python handler runs right after this call.
    if threading.current_thread() is threading.main_thread():
        signal.pthread_kill(threading.get_ident(), signum)
    else:
        os.kill(os.getpid(), signum)
