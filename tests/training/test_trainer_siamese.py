"""``model.aux_head=siamese`` in DeepEmoCluster training: tracked like the cluster head, and a
resumed run reproduces the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.serving.evaluate import evaluate
from deepemocluster.training.data import build_data
from deepemocluster.training.run import run
from tests.support.resume import second_epoch_straight_and_resumed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_siamese_aux_head_trains_end_to_end_with_metrics_logged(siamese_cfg):
    cfg = siamese_cfg("siamese.loss=contrastive", "siamese.distance=cosine")
    test = run(cfg)
    client = MlflowClient(f"sqlite:///{Path(cfg.tracking.runs_dir) / 'mlflow.db'}")
    (r,) = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    assert r.info.status == "FINISHED" and r.data.params["model.aux_head"] == "siamese"
    for key in ("train/loss_pair", "train/loss_ccc", "dev/ccc_mean", "time/epoch_s"):
        assert [m.step for m in client.get_metric_history(r.info.run_id, key)] == [1, 2], key
    assert not any(k.startswith(("cluster/", "train/loss_ce")) for k in r.data.metrics)
    assert 0.0 < r.data.metrics["train/loss_pair"] < 4.0  # cosine distance ≤ 2, margin 1
    assert r.data.metrics["test/ccc_mean"] == pytest.approx(test["test/ccc_mean"])
    best = Path(cfg.tracking.runs_dir) / "tiny" / "checkpoint_best.pt"
    assert any(k.startswith("siamese.") for k in Checkpoint.load(best).model)
    assert evaluate(str(best), "Test1")["ccc_mean"] == pytest.approx(
        test["test/ccc_mean"], abs=1e-6
    )


def test_resumed_siamese_epoch_matches_the_uninterrupted_one(siamese_cfg, tmp_path):
    cfg = siamese_cfg("siamese.pairs_per_batch=16")
    data = build_data(load_corpus(cfg), cfg)

    second, resumed = second_epoch_straight_and_resumed(cfg, data, tmp_path)
    assert resumed == second
    assert "train/loss_pair" in second and np.isfinite(second["train/loss_pair"])
