"""What every ``python -m deepemocluster.X`` entry point shares: logging and exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from deepemocluster.errors import DeepEmoClusterError, Interrupted

log = logging.getLogger("deepemocluster")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


def exit_code(work: Callable[[], object], output: Path | None = None) -> int:
    """An entry point's exit status: 0 on success (or what ``work`` returns, when an int), 128 +
    signal number when interrupted (the last finished epoch is checkpointed), 1 with one log
    line for any reported error, or when ``output`` cannot be written."""
    try:
        result = work()
    except Interrupted as e:
        log.error("%s; the last finished epoch is checkpointed", e)
        return 128 + e.signum
    except DeepEmoClusterError as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        if output is None:
            raise
        log.error("cannot write %s: %s", output, e)
        return 1
    return result if isinstance(result, int) else 0
