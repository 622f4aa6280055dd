"""A run's folder: config, checkpoints, cluster assignments, skipped files, log, MLflow run id."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import flatten, to_yaml
from deepemocluster.errors import CheckpointError, ConfigError
from deepemocluster.runtime.files import write_atomic

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


class RunFolder:
    """``runs_dir/run_name``; a resumed run re-opens it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last, self.best = path / LAST, path / BEST

    def prepare(self, cfg: DictConfig) -> Checkpoint | None:
        """New run: create the folder. Resume: check the config is unchanged and return the
        last checkpoint (None when no epoch had finished)."""
        saved_cfg = self.path / "config.yaml"
        if cfg.train.resume and not cfg.tracking.run_name:
            raise ConfigError("train.resume=true needs tracking.run_name=<the run to continue>")
        if saved_cfg.exists():
            if not cfg.train.resume:
                raise ConfigError(
                    f"run folder {self.path} exists: pass train.resume=true to continue it, "
                    "or choose another tracking.run_name"
                )
            old, new = flatten(OmegaConf.load(saved_cfg)), flatten(cfg)
            changed = sorted(
                k
                for k in old.keys() | new.keys()
                if k != "train.resume" and old.get(k) != new.get(k)
            )
            if changed:
                raise ConfigError(
                    f"resume with a changed config is refused (params are immutable): {', '.join(changed)}"
                )
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):  # half-written by a killed process, never read
            stale.unlink(missing_ok=True)
        write_atomic(saved_cfg, to_yaml(cfg))
        return Checkpoint.load(self.last) if cfg.train.resume and self.last.exists() else None

    def saved_run_id(self) -> str | None:
        meta = self.path / "run.json"
        return json.loads(meta.read_text())["run_id"] if meta.exists() else None

    def save_run_id(self, run_id: str, run_name: str) -> None:
        write_atomic(self.path / "run.json", json.dumps({"run_id": run_id, "run_name": run_name}))

    def progress(self) -> str:
        """How far the checkpoints go, for error messages."""
        try:
            return f"last finished epoch {Checkpoint.load(self.last).epoch}"
        except CheckpointError:
            return "no epoch finished yet"

    def assignments(self, name: str) -> Path:
        return self.path / "assignments" / f"{name}.npz"

    def save_assignments(self, name: str, assignments: np.ndarray) -> Path:
        path = self.assignments(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, assignments=assignments.astype(np.int32))
        return path

    def write_skipped(self, skipped: list[tuple[str, str]]) -> Path:
        path = self.path / "skipped.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
        return path

    def log_to_file(self) -> Path:
        """The package's INFO log also goes to ``train.log`` here (replacing a previous run's
        file when several runs share one process, e.g. a study)."""
        path = self.path / "train.log"
        package = logging.getLogger("deepemocluster")
        for old in [h for h in package.handlers if getattr(h, "run_log", False)]:
            package.removeHandler(old)
            old.close()
        handler = logging.FileHandler(path)
        handler.run_log = True
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        package.addHandler(handler)
        if package.getEffectiveLevel() > logging.INFO:
            package.setLevel(logging.INFO)
        return path
