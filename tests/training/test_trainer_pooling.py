"""Attention pooling through the real training run: it learns a label that no single chunk
shows (the mean of chunk predictions does not), its checkpoint predicts through evaluate and the
logged pyfunc model, and a resumed epoch equals the uninterrupted one."""

from __future__ import annotations

import csv

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import load_config
from deepemocluster.data.corpus import load_corpus
from deepemocluster.metrics import ccc
from deepemocluster.serving.evaluate import evaluate
from deepemocluster.training.data import build_data
from deepemocluster.training.run import run
from deepemocluster.training.trainer import Trainer
from tests.model.utterance_property_corpus import CHUNKING, write_corpus
from tests.support.resume import second_epoch_straight_and_resumed
from tests.support.tiny_config import TINY_MODEL

pytestmark = pytest.mark.slow


def test_attention_learns_what_no_single_chunk_shows_in_a_real_run(tmp_path, one_torch_thread):
    """The label is the pitch balance over the whole utterance (utterance_property_corpus.py):
    the same run, data and steps for both heads; only attention pooling can learn it."""
    root = write_corpus(tmp_path / "corpus", n_dev=24)
    base = [
        "data.format=msp_podcast",
        f"data.root={root}",
        f"features.store={tmp_path / 'features'}",
        f"tracking.runs_dir={tmp_path / 'runs'}",
        *TINY_MODEL,
        *CHUNKING,
        "model.aux_head=none",
        "model.attributes=[arousal]",
        "train.batch_utterances=16",
        "train.epochs=6",
        "train.threads=1",
    ]
    tests = {}
    for pooling in ("mean", "attention"):
        cfg = load_config(
            overrides=[*base, f"model.pooling={pooling}", f"tracking.run_name={pooling}"]
        )
        tests[pooling] = run(cfg)["test/ccc_arousal"]
    assert tests["attention"] > 0.8, tests
    assert abs(tests["mean"]) < 0.3, tests

    # the attention checkpoint predicts the same through evaluate and the logged model
    best = tmp_path / "runs" / "attention" / "checkpoint_best.pt"
    assert any(k.startswith("pooling.") for k in Checkpoint.load(best).model)
    assert evaluate(str(best), "Test1")["ccc_arousal"] == pytest.approx(
        tests["attention"], abs=1e-6
    )
    with (root / "Labels" / "labels_consensus.csv").open() as f:
        test_rows = [r for r in csv.DictReader(f) if r["Split_Set"] == "Test1"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = Checkpoint.load(best).run_id
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    paths = [str(root / "Audios" / r["FileName"]) for r in test_rows]
    out = model.predict(pd.DataFrame({"path": paths}))
    assert out["error"].tolist() == [""] * len(paths)
    ratings = np.array([float(r["EmoAct"]) for r in test_rows])
    assert ccc(ratings, out["arousal"].to_numpy(dtype=float)) == pytest.approx(
        tests["attention"], abs=1e-3
    )


def test_a_resumed_attention_epoch_matches_the_uninterrupted_one(
    tiny_cfg, tmp_path, one_torch_thread
):
    """Joint clustering with attention pooling in micro-batches: the pooling weights and their
    optimiser state are in the checkpoint, the batches are drawn from the epoch's seeds."""
    cfg = tiny_cfg("model.pooling=attention", "train.micro_batch_chunks=5")
    data = build_data(load_corpus(cfg), cfg)

    def trains(whole: Trainer) -> None:  # the pooling weights really change in an epoch
        assert not torch.equal(whole.model.pooling.score[0].weight, initial)

    initial = Trainer(cfg, data, torch.device("cpu")).model.pooling.score[0].weight.detach().clone()
    second, resumed = second_epoch_straight_and_resumed(cfg, data, tmp_path, trains)
    assert resumed == second
    assert {"train/loss_ce", "train/loss_ccc"} <= set(second)
    assert all(np.isfinite(v) for v in second.values())
