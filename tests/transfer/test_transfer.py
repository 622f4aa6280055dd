"""Source → target transfer end to end against a real sqlite MLflow store, and fine-tuning that
learns on the demo target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.training.data import build_data
from deepemocluster.training.trainer import Trainer
from deepemocluster.transfer.finetune import FINETUNED, few_shot, run_transfer, target_scores

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _runs(cfg) -> dict[str, object]:
    client = MlflowClient(f"sqlite:///{Path(cfg.tracking.runs_dir) / 'mlflow.db'}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def _split(checkpoint: Checkpoint, n_frozen: int) -> tuple[dict, dict]:
    """(frozen encoder blocks, everything else) of a checkpoint's model weights and buffers."""
    frozen = tuple(f"encoder.blocks.{i}." for i in range(n_frozen))
    model = checkpoint.model
    return (
        {k: v for k, v in model.items() if k.startswith(frozen)},
        {k: v for k, v in model.items() if not k.startswith(frozen) and v.is_floating_point()},
    )


def test_transfer_runs_nest_freeze_blocks_and_reuse_the_pretrained_encoder(siamese_cfg):
    cfg = siamese_cfg("transfer.freeze_blocks=2", "transfer.shots=4")
    metrics = run_transfer(cfg)
    runs = _runs(cfg)
    assert set(runs) == {"tiny", "tiny-pretrain", "tiny-finetune"}
    parent, pre, fine = runs["tiny"], runs["tiny-pretrain"], runs["tiny-finetune"]
    for child in (pre, fine):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert parent.data.tags["pretrained_run"] == pre.info.run_id
    assert pre.data.params["data.demo.seed"] == "1" and fine.data.params["data.demo.seed"] == "2"
    assert fine.data.params["optim.main.lr"] == "0.003"
    for key in ("proto_accuracy", "proto_macro_f1", "knn_accuracy", "knn_macro_f1", "ccc_mean"):
        assert parent.data.metrics[f"test/{key}"] == pytest.approx(metrics[f"test/{key}"]), key
        assert fine.data.metrics[f"test/{key}"] == pytest.approx(metrics[f"test/{key}"]), key
    assert 0.0 <= metrics["test/proto_accuracy"] <= 1.0
    assert metrics["support_utterances"] <= 4 * 8  # at most 4 per class, 8 demo classes
    client = MlflowClient(f"sqlite:///{Path(cfg.tracking.runs_dir) / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(fine.info.run_id, "train/loss_pair")] == [
        1,
        2,
    ]

    runs_dir = Path(cfg.tracking.runs_dir)
    pretrained = Checkpoint.load(runs_dir / "tiny-pretrain" / "checkpoint_best.pt")
    tuned = Checkpoint.load(runs_dir / "tiny-finetune" / FINETUNED)
    frozen_before, free_before = _split(pretrained, 2)
    frozen_after, free_after = _split(tuned, 2)
    assert frozen_before and all(torch.equal(v, frozen_after[k]) for k, v in frozen_before.items())
    changed = [k for k, v in free_before.items() if not torch.equal(v, free_after[k])]
    assert any(k.startswith("encoder.blocks.3.") for k in changed)
    assert any(k.startswith("siamese.") for k in changed)

    # Reuse by run id, freezing all but the last block: no second pre-training.
    again = siamese_cfg(
        "tracking.run_name=again",
        f"transfer.pretrained_run={pre.info.run_id}",
        "transfer.freeze_blocks=-1",
    )
    run_transfer(again)
    runs = _runs(again)
    assert "again-pretrain" not in runs
    assert runs["again-finetune"].data.tags["mlflow.parentRunId"] == runs["again"].info.run_id
    assert runs["again"].data.tags["pretrained_run"] == pre.info.run_id
    reused = Checkpoint.load(runs_dir / "again-finetune" / FINETUNED)
    frozen_before, _ = _split(pretrained, 3)
    frozen_after, _ = _split(reused, 3)
    assert all(torch.equal(v, frozen_after[k]) for k, v in frozen_before.items())


def test_short_finetune_beats_the_untrained_encoder_on_the_demo_target(siamese_cfg, tmp_path):
    """Low/mid/high arousal bins (the demo's clearest attribute), 10 utterances per bin, 8 short
    epochs from a random start: prototypes clearly better than the untrained encoder's, on
    average over three seeds (one seed's test accuracy moves in steps of 1/48)."""
    before, after = [], []
    for seed in (0, 1, 2):
        cfg = siamese_cfg(
            "transfer.shots=10",
            "siamese.pair_label=bin",
            "train.batch_utterances=4",
            f"train.seed={seed}",
        )
        data = build_data(few_shot(load_corpus(cfg), cfg), cfg)
        trainer = Trainer(cfg, data, torch.device("cpu"))
        before.append(target_scores(trainer, cfg)["proto_accuracy"])
        trainer.fit(epochs=8)
        after.append(target_scores(trainer, cfg)["proto_accuracy"])
    assert np.mean(after) > np.mean(before) + 0.1, (before, after)
