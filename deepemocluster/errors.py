"""Exceptions that name what went wrong and where; entry points turn them into one message + exit 1."""

import signal


class DeepEmoClusterError(Exception):
    """Base of every error the tool reports to the user without a traceback."""


class ConfigError(DeepEmoClusterError):
    """A config key is unknown, mistyped, missing or out of range."""


class ManifestError(DeepEmoClusterError):
    """A label file or corpus layout is wrong; the message names file and line."""


class AudioError(DeepEmoClusterError):
    """One audio file cannot be used; ``reason`` is a short machine-readable cause."""

    def __init__(self, path: object, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


class TooManyBadFilesError(DeepEmoClusterError):
    """More audio files were skipped than ``data.max_skip_ratio`` allows; ``skipped`` lists them
    as (path, reason)."""

    def __init__(self, message: str, skipped: list[tuple[str, str]] | None = None) -> None:
        self.skipped = list(skipped or [])
        super().__init__(message)


class CheckpointError(DeepEmoClusterError):
    """A checkpoint is missing, incompatible or unsafe to load."""


class TrackingError(DeepEmoClusterError):
    """The MLflow tracking store cannot be reached or refuses a write."""


class TrainingError(DeepEmoClusterError):
    """Training cannot go on (a NaN/Inf loss, say); the message names epoch and step."""


class Interrupted(DeepEmoClusterError):
    """SIGINT/SIGTERM arrived; the last epoch's checkpoint is intact."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")
