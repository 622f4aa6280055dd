"""The logged MLflow model: a DataFrame with a ``path`` column in, the predict columns out.

``mlflow.pyfunc.load_model("runs:/<id>/model").predict(pd.DataFrame({"path": [...]}))``,
``mlflow models predict`` and ``mlflow models serve`` give the rows of the Python API's
``Model.predict``, which are those of ``python -m deepemocluster.predict``; the request parameter
``segment`` (``auto``, the default, ``always`` or ``never``) is predict's ``--segment``. The model
is logged *from code* (``pyfunc_model.py``, no pickled object); its artifact is the best
checkpoint, this package travels in its ``code/`` folder, and its pip requirements are this
package's dependencies at their installed versions.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.serving.api import Model
from deepemocluster.serving.timeline import output_types
from deepemocluster.tracking import log_pyfunc_model

CHECKPOINT = "checkpoint"
PACKAGE = Path(__file__).resolve().parent.parent  # travels whole in the model's code/ folder
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PARAMS = {"segment": "auto"}  # request parameters and their defaults (all strings)


def log_model(checkpoint: Path, attributes: list[str]) -> None:
    """Log the pyfunc model named ``model`` to the active run."""
    log_pyfunc_model(
        MODEL_CODE,
        {CHECKPOINT: checkpoint},
        {"path": "string"},
        output_types(attributes),
        pip_requirements=pinned_requirements(),
        code_paths=[PACKAGE],
        params=PARAMS,
    )


def pinned_requirements(package: str = "deepemocluster") -> list[str]:
    """``name==installed version`` for each runtime dependency of ``package`` (extras left out),
    so that ``--env-manager virtualenv`` rebuilds the environment the model was logged in."""
    try:
        declared = importlib.metadata.requires(package) or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return []
    pinned = []
    for text in declared:
        if "extra ==" in text:  # test/dev extras are not needed to serve
            continue
        name = re.match(r"[A-Za-z0-9._-]+", text).group(0)
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(text)  # declared but not installed here: keep its bound
    return pinned


def load(artifacts: dict[str, str]) -> Callable[[pd.DataFrame, dict], pd.DataFrame]:
    """Called by MLflow when the model is loaded: the checkpoint → a function of the input
    DataFrame and the request parameters, ``Model.predict`` on its ``path`` column."""
    model = Model.from_checkpoint(Checkpoint.load(artifacts[CHECKPOINT]))

    def predict(frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        segment = str(params.get("segment", PARAMS["segment"]))
        return model.predict(frame["path"].astype(str).tolist(), segment=segment)

    return predict
