"""train.micro_batch_chunks inside the real epoch loop: one optimiser step per batch, never more
than the limit of chunks holding activations, in joint and two_stage mode and with the Siamese
head (whose pair loss spans the whole batch); one pass per micro-batch when the batch's only loss
is the per-chunk cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.datasets import ChunkBatches
from deepemocluster.data.samplers import UtteranceBatch
from deepemocluster.training.data import build_data
from deepemocluster.training.step import TrainingStep
from deepemocluster.training.trainer import Trainer
from tests.support.memory_probe import saved_activation_rows

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "extra",
    [["cluster.mode=joint"], ["cluster.mode=two_stage"], ["model.aux_head=siamese"]],
    ids=["joint", "two_stage", "siamese"],
)
def test_an_epoch_in_micro_batches_steps_once_per_batch(tiny_cfg, tmp_path, extra):
    cfg = tiny_cfg("train.micro_batch_chunks=5", *extra)  # batches of 8 x 3 = 24 chunks
    data = build_data(load_corpus(cfg), cfg)
    trainer = Trainer(cfg, data, torch.device("cpu"))
    steps: list[int] = []
    adam = trainer.optimizers["main"]
    adam.register_step_post_hook(lambda *_: steps.append(1))
    with saved_activation_rows(trainer.model) as rows:
        metrics = trainer.run_epoch()

    assert rows and max(rows) <= 5
    passes = 2 if cfg.cluster.mode == "two_stage" and cfg.model.aux_head == "cluster" else 1
    batch = cfg.train.batch_utterances * cfg.chunking.n_chunks
    assert len(steps) >= passes and len(steps) * batch >= data.train.n_total_chunks
    assert len(steps) <= passes * -(-data.train.n_total_chunks // batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_a_batch_with_the_cluster_loss_alone_runs_each_micro_batch_once(tiny_cfg, tmp_path):
    """The two_stage unlabelled stage: no CCC, so no first pass over the whole batch; a batch with
    rated chunks needs both passes."""
    cfg = tiny_cfg("train.micro_batch_chunks=5")
    data = build_data(load_corpus(cfg), cfg)
    cpu = torch.device("cpu")
    trainer = Trainer(cfg, data, cpu)
    model = trainer.model
    labels = np.arange(data.train.n_total_chunks) % cfg.cluster.k
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    rng = np.random.default_rng(0)
    step = TrainingStep(model, model, data, cpu, rng, False, trainer.terms, 5)
    for ids, passes, losses in (
        (data.unlabelled_chunks[:12], 1, {"train/loss_ce"}),
        (data.labelled_chunks[:12], 2, {"train/loss_ce", "train/loss_ccc"}),
    ):
        calls.clear()
        x, batch = ChunkBatches(data.train)[UtteranceBatch.of(ids, data.train.n_chunks, 0)]
        assert set(step(x, batch, labels).terms) == losses
        assert len(calls) == passes * 3  # 12 chunks in micro-batches of 5, 5 and 2
        assert all(p.grad is not None for p in model.encoder.parameters())
        model.zero_grad(set_to_none=True)
