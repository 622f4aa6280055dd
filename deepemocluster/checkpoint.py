"""The checkpoint contract: what a checkpoint holds, written atomically, read without unpickling.

``Checkpoint`` is the only description of a checkpoint's contents; no other module reads its keys.
On disk it is one flat dict of tensors and plain values (``torch.load(weights_only=True)`` reads
it back), the same layout as checkpoints written before this record existed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.clustering import Projection
from deepemocluster.config import load_config
from deepemocluster.data.labels import LabelScaler
from deepemocluster.data.manifest import RATING_RANGE
from deepemocluster.errors import CheckpointError
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.build import build_model
from deepemocluster.runtime.files import write_atomic

# The trainer's own state (Trainer.state_dict() without the model): only a resumed run needs it.
TRAINER_KEYS = (
    "epoch",
    "optimizers",
    "torch_rng",
    "best_score",
    "best_epoch",
    "bad_epochs",
    "prev_assignments",
)


@dataclass(frozen=True)
class ClusterSpace:
    """The final clustering of a run, as prediction needs it to place a new chunk: the projection
    its embeddings went through and the centroids in that space."""

    projection: Projection
    centroids: np.ndarray


@dataclass
class Checkpoint:
    """A trained model and everything needed to use it or to continue its training."""

    config_yaml: str  # the run's fully resolved config
    model: dict[str, torch.Tensor]
    scaler: LabelScaler  # Train rating statistics: predictions are mapped back with them
    feature_mean: np.ndarray  # Train per-bin feature statistics
    feature_std: np.ndarray
    run_id: str = ""
    # the scale the ratings were given on: predictions are clipped to it (older checkpoints: 1–7)
    rating_range: tuple[float, float] = RATING_RANGE
    trainer: dict[str, Any] = field(default_factory=dict)  # TRAINER_KEYS, for resume
    clusters: ClusterSpace | None = None  # set once training has finished with clusters

    @property
    def epoch(self) -> int:
        """Epochs finished when it was written."""
        return int(self.trainer.get("epoch", 0))

    def config(self) -> DictConfig:
        return load_config(text=self.config_yaml)

    def restore_model(self) -> tuple[DictConfig, DeepEmoCluster]:
        """The run's config and its model with these weights (eval mode, CPU)."""
        cfg = self.config()
        model = build_model(cfg, len(self.feature_mean))
        model.load_state_dict(self.model)
        return cfg, model.eval()

    def save(self, path: str | Path) -> None:
        write_atomic(path, lambda f: torch.save(self._to_dict(), f))

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read a checkpoint: tensors, numbers, strings and containers only."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            first_line = str(e).split("\n")[0]
            raise CheckpointError(
                f"{path}: refused, it holds objects other than tensors and plain data ({first_line})"
            ) from e
        except (RuntimeError, EOFError, OSError) as e:
            raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
        try:
            return cls._from_dict(state)
        except (KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{path}: not a deepemocluster checkpoint (no {e})") from e
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e

    def _to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config_yaml": self.config_yaml,
            "model": self.model,
            "label_mean": torch.from_numpy(self.scaler.mean),
            "label_std": torch.from_numpy(self.scaler.std),
            "feature_mean": torch.from_numpy(self.feature_mean),
            "feature_std": torch.from_numpy(self.feature_std),
            "run_id": self.run_id,
            "rating_range": torch.tensor(self.rating_range, dtype=torch.float64),
            **self.trainer,
        }
        if self.clusters is not None:
            p = self.clusters.projection
            state["clustering"] = {
                "centroids": torch.from_numpy(self.clusters.centroids),
                "projection_matrix": _tensor(p.matrix),
                "projection_bias": _tensor(p.bias),
                "l2_normalize": p.l2_normalize,
            }
        return state

    @classmethod
    def _from_dict(cls, state: dict[str, Any]) -> Checkpoint:
        clusters = None
        if (c := state.get("clustering")) is not None:
            projection = Projection(
                _array(c["projection_matrix"]),
                _array(c["projection_bias"]),
                bool(c["l2_normalize"]),
            )
            clusters = ClusterSpace(projection, c["centroids"].numpy())
        return cls(
            config_yaml=state["config_yaml"],
            model=state["model"],
            scaler=LabelScaler(state["label_mean"].numpy(), state["label_std"].numpy()),
            feature_mean=state["feature_mean"].numpy(),
            feature_std=state["feature_std"].numpy(),
            run_id=state.get("run_id", ""),
            rating_range=_rating_range(state.get("rating_range")),
            trainer={k: state[k] for k in TRAINER_KEYS if k in state},
            clusters=clusters,
        )


def _rating_range(saved: torch.Tensor | None) -> tuple[float, float]:
    if saved is None:
        return RATING_RANGE
    values = saved.flatten().tolist()
    if len(values) != 2 or not values[0] < values[1]:
        raise CheckpointError(f"rating_range {values} is not a (low, high) scale")
    return values[0], values[1]


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.numpy()
