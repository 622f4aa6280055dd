"""What every ``python -m deepemocluster.X`` entry point shares: logging and exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from deepemocluster.errors import DeepEmoClusterError
from deepemocluster.training.signals import Interrupted

log = logging.getLogger("deepemocluster")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


def exit_code(work: Callable[[], object]) -> int:
    """An entry point's exit status: 0 on success, 128 + signal number when interrupted (the
    last finished epoch is checkpointed), 1 with one log line for any reported error."""
    try:
        work()
    except Interrupted as e:
        log.error("%s; the last finished epoch is checkpointed", e)
        return 128 + e.signum
    except DeepEmoClusterError as e:
        log.error("%s", e)
        return 1
    return 0
