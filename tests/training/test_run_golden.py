"""Behaviour pinned: three tiny runs (joint clustering; two_stage in micro-batches; the Siamese
head) reproduce the per-epoch metrics and final Test1 CCC recorded in golden_metrics.json,
exactly on the torch version and CPU kernel set they were recorded with (elsewhere within 0.05:
other kernels round differently). A change that means to alter training rewrites the file:
``python -m tests.training.test_run_golden`` (and says why in its commit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from deepemocluster.training.hooks import Hooks
from deepemocluster.training.run import run

GOLDEN = Path(__file__).with_name("golden_metrics.json")
RUNS = {
    "joint": [],
    "two_stage_micro": ["cluster.mode=two_stage", "train.micro_batch_chunks=5"],
    "siamese": ["model.aux_head=siamese", "siamese.embed_dim=16"],
}
PINNED = ("dev/", "train/", "cluster/")  # per-epoch metrics that must not move (not times)


class EpochMetrics(Hooks):
    def __init__(self) -> None:
        self.epochs: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key.startswith(PINNED):
                self.epochs.setdefault(key, []).append(value)


def observed(cfg) -> dict:
    epochs = EpochMetrics()
    test = run(cfg, hooks=[epochs])
    return {"epochs": epochs.epochs, "test": test}


def platform() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_a_trained_run_reproduces_its_recorded_metrics(name, tiny_cfg):
    golden = json.loads(GOLDEN.read_text())
    got = observed(tiny_cfg("train.threads=1", *RUNS[name]))
    want = golden["runs"][name]
    assert set(got["epochs"]) == set(want["epochs"])
    same_platform = all(golden[k] == v for k, v in platform().items())
    tolerance = 0.0 if same_platform else 0.05
    for key, values in want["epochs"].items():
        assert got["epochs"][key] == pytest.approx(values, abs=tolerance), key
    assert got["test"] == pytest.approx(want["test"], abs=tolerance)


if __name__ == "__main__":  # record anew: python -m tests.training.test_run_golden
    import tempfile

    from deepemocluster.config import load_config
    from tests.support.tiny_config import TINY

    base = Path(tempfile.mkdtemp())
    runs = {}
    for name, extra in RUNS.items():
        overrides = [
            *TINY,
            f"data.root={base / 'demo'}",
            f"features.store={base / 'features'}",
            f"tracking.runs_dir={base / 'runs'}",
            f"tracking.run_name={name}",
            "train.threads=1",
            *extra,
        ]
        runs[name] = observed(load_config(overrides=overrides))
    GOLDEN.write_text(json.dumps({**platform(), "runs": runs}, indent=1, sort_keys=True))
    sys.exit(0)
