"""Training batches of whole utterances (``model.pooling=attention``): the layout of a batch,
micro-batches cut at utterance boundaries, and a step whose gradients, split or under DDP, are
those of the whole batch's cross-entropy on the drawn chunks and CCC on the pooled utterances."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from deepemocluster.config import load_config
from deepemocluster.data.samplers import UtteranceBatch, UtteranceBatches
from deepemocluster.losses import ccc_loss
from deepemocluster.model.build import build_model
from deepemocluster.runtime import distributed
from deepemocluster.training.microbatch import SplitStep, utterance_bounds
from tests.support.loopback import free_port
from tests.support.memory_probe import saved_activation_rows
from tests.support.tiny_config import TINY

CPU = torch.device("cpu")
N_MELS, C, LABELLED = 32, 3, 10  # chunk ids below 30 are labelled (10 utterances of 3 chunks)


def test_a_drawn_labelled_chunk_brings_its_whole_utterance_once():
    drawn = np.array([40, 7, 31, 8, 7, 45, 0, 40])
    batch = UtteranceBatch.of(drawn, C, LABELLED * C)
    # the drawn chunks, in draw order and with repeats, are rows of the batch
    assert np.array_equal(batch.ids[batch.drawn], drawn)
    singles = drawn[drawn >= LABELLED * C]
    assert np.array_equal(batch.ids[: len(singles)], singles)  # unlabelled: one row per draw
    blocks = batch.ids[len(singles) :].reshape(-1, C)
    assert np.array_equal(blocks // C, np.array([[2, 2, 2], [0, 0, 0]]))  # first-draw order
    assert np.array_equal(blocks % C, np.tile(np.arange(C), (2, 1)))  # every chunk, in order
    assert batch.counts.tolist() == [1] * len(singles) + [C, C]
    assert batch.first_rows.tolist() == [*range(len(singles)), len(singles), len(singles) + C]


def test_without_labelled_draws_or_pooling_a_batch_is_the_drawn_chunks():
    drawn = np.array([5, 2, 33, 2])
    for whole_below in (0, 1):  # mean pooling; no drawn chunk below the bound
        batch = UtteranceBatch.of(drawn, C, whole_below)
        assert np.array_equal(batch.ids, drawn) and batch.counts is None
        assert np.array_equal(batch.drawn, np.arange(4))
        assert np.array_equal(batch.first_rows, np.arange(4))
    served = list(UtteranceBatches([drawn, drawn[:2]], C, 0))
    assert [len(b.ids) for b in served] == [4, 2]


@pytest.mark.parametrize("n", [1, 7, 21, 24, 100])
@pytest.mark.parametrize("max_chunks", [0, 1, 4, 5, 32])
def test_single_chunks_are_cut_as_tensor_split_cuts_rows(n, max_chunks):
    """The cuts of one-chunk utterances (mean pooling) are exactly the former ones."""
    bounds = utterance_bounds(np.ones(n, dtype=np.int64), max_chunks)
    parts = 1 if max_chunks == 0 else -(-n // max_chunks)
    expected = [len(p) for p in torch.arange(n).tensor_split(parts)]
    assert np.diff(bounds).tolist() == expected


@pytest.mark.parametrize("max_chunks", [1, 3, 5, 7, 12, 50])
def test_micro_batches_hold_whole_utterances_within_the_limit(max_chunks):
    counts = np.random.default_rng(max_chunks).integers(1, 6, 40)
    bounds = utterance_bounds(counts, max_chunks)
    assert bounds[0] == 0 and bounds[-1] == len(counts) and np.all(np.diff(bounds) > 0)
    chunks = np.add.reduceat(counts, bounds[:-1])
    assert np.all((chunks <= max_chunks) | (np.diff(bounds) == 1))


def test_an_utterance_longer_than_the_limit_is_a_micro_batch_of_its_own():
    assert utterance_bounds(np.array([1, 1, 3, 3, 1]), 5).tolist() == [0, 3, 5]
    assert utterance_bounds(np.array([2, 7, 1, 1]), 4).tolist() == [0, 1, 2, 4]


def tiny_config(*extra: str):
    return load_config(
        overrides=[*TINY, "data.root=unused", "model.pooling=attention", "model.dropout=0.5"]
        + list(extra)
    )


def make_batch(cfg, seed: int = 0):
    """A joint-clustering batch: 14 drawn chunks, labelled ones brought whole, with chunks,
    pseudo-labels per chunk id and a rating per utterance (NaN for the unlabelled)."""
    rng = np.random.default_rng(seed)
    drawn = np.concatenate([rng.integers(0, LABELLED * C, 6), rng.integers(30, 60, 8)])
    batch = UtteranceBatch.of(rng.permutation(drawn), C, LABELLED * C)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(batch.ids), cfg.chunking.frames, N_MELS, generator=g)
    labels = rng.integers(0, cfg.cluster.k, 60)
    targets = torch.randn(20, len(cfg.model.attributes), generator=g)
    targets[LABELLED:] = float("nan")
    return batch, x, labels, targets


def batch_loss(aux, pred, batch: UtteranceBatch, labels, targets) -> torch.Tensor:
    """The loss of a clustering step, written out: cross-entropy on the drawn chunks, CCC on
    the rated utterances' pooled predictions."""
    y = targets[batch.ids[batch.first_rows] // C]
    rated = ~torch.isnan(y[:, 0])
    ce = F.cross_entropy(aux[batch.drawn], torch.from_numpy(labels[batch.ids[batch.drawn]]))
    return ce + ccc_loss(pred[rated], y[rated])


def reference_step(model, x, batch, labels, targets, max_chunks: int) -> torch.Tensor:
    """The definition: the same micro-batches through the network in one autograd graph."""
    bounds = utterance_bounds(batch.counts, max_chunks)
    ends = np.concatenate([[0], np.cumsum(batch.counts)])
    outputs = [
        model(x[ends[a] : ends[b]], torch.from_numpy(batch.counts[a:b]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    aux = torch.cat([o[0] for o in outputs])
    pred = torch.cat([o[1]["plain"] for o in outputs])
    loss = batch_loss(aux, pred, batch, labels, targets)
    loss.backward()
    return loss.detach()


def split_step(model, net, x, batch, labels, targets, max_chunks: int) -> torch.Tensor:
    step = SplitStep(model, net, max_chunks, CPU, amp=False)
    aux, named = step.forward(x, batch.counts)
    pred = named["plain"]
    assert aux.shape[0] == len(batch.ids) and pred.shape[0] == len(batch.counts)
    loss = batch_loss(aux, pred, batch, labels, targets)
    step.backward(loss)
    return loss.detach()


def test_split_pooled_gradients_equal_the_whole_batch_losses_gradients():
    cfg = tiny_config()
    batch, x, labels, targets = make_batch(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, N_MELS).train()
    ref_model = copy.deepcopy(model)
    torch.manual_seed(7)
    ref_loss = reference_step(ref_model, x, batch, labels, targets, 5)
    torch.manual_seed(7)
    with saved_activation_rows(model) as rows:
        loss = split_step(model, model, x, batch, labels, targets, 5)

    assert max(rows) <= 5 and len(rows) > 0
    torch.testing.assert_close(loss, ref_loss)
    for (name, p), ref in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert p.grad is not None and ref.grad is not None, name
        torch.testing.assert_close(p.grad, ref.grad, rtol=1e-4, atol=1e-6, msg=name)
    for name, p in [*model.encoder.named_parameters(), *model.pooling.named_parameters()]:
        assert p.grad.abs().sum() > 0, name  # the CCC of pooled utterances reaches them


def _ddp_rank(rank: int, port: int, results) -> None:
    """One of two gloo ranks: its own batch of whole utterances, micro-batches of 5, DDP."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg, N_MELS).train()
    net = distributed.wrap(model, distributed.World(rank, 2))
    batch, x, labels, targets = make_batch(cfg, seed=rank)
    torch.manual_seed(7 + rank)
    split_step(model, net, x, batch, labels, targets, 5)
    results[rank] = [p.grad.clone() for p in model.parameters()]
    dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_a_pooled_split_step_all_reduces_the_ranks_gradients():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_rank, args=(free_port(), results), nprocs=2)
        results = dict(results)
    cfg = tiny_config()
    expected = []
    for rank in range(2):
        batch, x, labels, targets = make_batch(cfg, seed=rank)
        torch.manual_seed(0)
        model = build_model(cfg, N_MELS).train()
        torch.manual_seed(7 + rank)
        reference_step(model, x, batch, labels, targets, 5)
        expected.append([p.grad for p in model.parameters()])
    for got in (results[0], results[1]):
        for g, e0, e1 in zip(got, *expected, strict=True):
            torch.testing.assert_close(g, (e0 + e1) / 2, rtol=1e-4, atol=1e-6)
