"""train.micro_batch_chunks inside the real epoch loop: one optimiser step per batch, never more
than the limit of chunks holding activations, in joint and two_stage mode and with the Siamese
head (whose pair loss spans the whole batch)."""

from __future__ import annotations

import pytest
import torch
from memory_probe import saved_activation_rows

from deepemocluster.data.corpus import load_corpus
from deepemocluster.train import Loop, build_data

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "extra",
    [["cluster.mode=joint"], ["cluster.mode=two_stage"], ["model.aux_head=siamese"]],
    ids=["joint", "two_stage", "siamese"],
)
def test_an_epoch_in_micro_batches_steps_once_per_batch(tiny_cfg, tmp_path, extra):
    cfg = tiny_cfg("train.micro_batch_chunks=5", *extra)  # batches of 8 x 3 = 24 chunks
    data = build_data(load_corpus(cfg), cfg)
    loop = Loop(cfg, data, torch.device("cpu"), tmp_path)
    steps: list[int] = []
    adam = loop.optimizers["main"]
    adam.register_step_post_hook(lambda *_: steps.append(1))
    with saved_activation_rows(loop.model) as rows:
        metrics = loop.run_epoch()

    assert rows and max(rows) <= 5
    passes = 2 if cfg.cluster.mode == "two_stage" and cfg.model.aux_head == "cluster" else 1
    batch = cfg.train.batch_utterances * cfg.chunking.n_chunks
    assert len(steps) >= passes and len(steps) * batch >= data.train.n_total_chunks
    assert len(steps) <= passes * -(-data.train.n_total_chunks // batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
