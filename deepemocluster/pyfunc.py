"""The logged MLflow model: a DataFrame with a ``path`` column in, the predict columns out.

``mlflow.pyfunc.load_model("runs:/<id>/model").predict(pd.DataFrame({"path": [...]}))`` gives the
same rows as ``python -m deepemocluster.predict``; the model's only artifact is the best checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.predict import Predictor, output_columns
from deepemocluster.tracking import log_pyfunc_model

CHECKPOINT = "checkpoint"


def log_model(checkpoint: Path, attributes: list[str]) -> None:
    """Log the pyfunc model named ``model`` to the active run."""
    types = {"path": "string", "cluster": "long", "error": "string"}
    outputs = {c: types.get(c, "double") for c in output_columns(attributes)}
    log_pyfunc_model(load, {CHECKPOINT: checkpoint}, {"path": "string"}, outputs)


def load(artifacts: dict[str, str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Called by MLflow when the model is loaded: the checkpoint → a DataFrame function."""
    predictor = Predictor.from_checkpoint(Checkpoint.load(artifacts[CHECKPOINT]))

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(
            list(predictor.predict(frame["path"].astype(str))), columns=predictor.columns
        )
        out["cluster"] = out["cluster"].astype("Int64")  # missing for files that failed
        return out

    return predict
