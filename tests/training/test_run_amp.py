"""train.amp: bfloat16 autocast in the training step and the embedding pass, float32 everywhere
the numbers are kept (weights, embeddings handed to k-means, evaluation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.serving.inference import embed_chunks
from deepemocluster.training.data import build_data
from deepemocluster.training.run import run
from deepemocluster.training.trainer import Trainer

pytestmark = pytest.mark.slow


def test_bf16_embeddings_are_float32_and_close_to_the_float32_pass(tiny_cfg):
    cfg = tiny_cfg()
    data = build_data(load_corpus(cfg), cfg)
    model = Trainer(cfg, data, torch.device("cpu")).model
    exact = embed_chunks(model, data.train, 64, torch.device("cpu"))
    fast = embed_chunks(model, data.train, 64, torch.device("cpu"), amp=True)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)  # autocast really ran in bfloat16
    scale = np.abs(exact).mean()
    assert np.abs(fast - exact).mean() < 0.02 * scale  # bf16 keeps ~3 significant digits


def test_an_amp_run_trains_and_keeps_float32_weights(tiny_cfg):
    cfg = tiny_cfg("train.amp=true", "train.epochs=3")
    test = run(cfg)
    assert np.isfinite(test["test/ccc_mean"])
    client = MlflowClient(f"sqlite:///{Path(cfg.tracking.runs_dir) / 'mlflow.db'}")
    (r,) = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    assert r.data.params["train.amp"] == "True"
    assert r.data.params["train.amp_resolved"] == "bfloat16"  # what the run chose, and logged
    best = Checkpoint.load(Path(cfg.tracking.runs_dir) / "tiny" / "checkpoint_best.pt")
    dtypes = {t.dtype for t in best.model.values() if t.is_floating_point()}
    assert dtypes == {torch.float32}
