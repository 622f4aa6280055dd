"""DeepEmoCluster: semi-supervised speech emotion recognition with per-epoch deep clustering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

# Idle OpenMP threads sleep instead of spinning. Both runtimes (torch's libgomp and the one the
# faiss-cpu wheel brings) read this once, when they load, so it must be set before anything
# imports torch or faiss; an explicit setting by the user wins. On a loaded 2-core machine
# PASSIVE made a 2-thread training step 1.43x and k-means 3.7x faster (docs/performance.md,
# "Training throughput"); on an idle one it cost about 2 % of training throughput
# (docs/decisions.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from deepemocluster.serving.api import Model


def load(source: str | Path, tracking_uri: str = "", backend: str | None = None) -> Model:
    """A trained model for notebooks and services: ``load(RUN_ID | checkpoint | model.onnx)``,
    then ``.predict(paths or arrays)`` (a DataFrame of ``python -m deepemocluster.predict``'s
    rows) and ``.embed(...)``; see ``deepemocluster.serving.api.load``. Imported on first call,
    so that ``import deepemocluster`` stays light (no torch, no MLflow)."""
    from deepemocluster.serving.api import load as load_model

    return load_model(source, tracking_uri, backend)
