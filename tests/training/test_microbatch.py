"""SplitStep: a training step in micro-batches computes the whole-batch losses and their exact
parameter gradients, with BatchNorm per micro-batch, and never keeps more than ``max_chunks``
chunks of activations for backward."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from deepemocluster.config import load_config
from deepemocluster.errors import ConfigError
from deepemocluster.losses import ccc_loss
from deepemocluster.model.build import build_model
from deepemocluster.runtime import distributed
from deepemocluster.training.microbatch import SplitStep
from tests.support.loopback import free_port
from tests.support.memory_probe import saved_activation_rows
from tests.support.tiny_config import TINY

CPU = torch.device("cpu")
N_MELS = 32


def batch_loss(aux: torch.Tensor, pred: torch.Tensor, labels, targets) -> torch.Tensor:
    """Losses that need the whole batch (CCC) next to per-chunk ones, as TrainingStep mixes them;
    the CCC sees only the first half of the rows, so some rows get no CCC gradient."""
    half = len(pred) // 2
    return F.cross_entropy(aux, labels) + ccc_loss(pred[:half], targets[:half])


def cross_entropy_only(aux: torch.Tensor, pred: torch.Tensor, labels, targets) -> torch.Tensor:
    """The unlabelled stage's loss: a mean over chunks, which ``SplitStep.per_chunk`` takes."""
    return F.cross_entropy(aux, labels)


def tiny_config():
    return load_config(overrides=[*TINY, "data.root=unused", "model.dropout=0.5"])


def make_batch(n: int, cfg, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.chunking.frames, N_MELS, generator=g)
    labels = torch.randint(0, cfg.cluster.k, (n,), generator=g)
    targets = torch.randn(n, len(cfg.model.attributes), generator=g)
    return x, labels, targets


@pytest.fixture()
def setup():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg, N_MELS).train()
    return cfg, model


def reference_step(model, x, labels, targets, parts: int, loss_fn=batch_loss):
    """The definition: every micro-batch through the network in one autograd graph."""
    outputs = [model(chunk) for chunk in x.tensor_split(parts)]
    aux = torch.cat([o[0] for o in outputs])
    pred = torch.cat([o[1]["plain"] for o in outputs])
    loss = loss_fn(aux, pred, labels, targets)
    loss.backward()
    return loss.detach(), pred.detach()


def split_step(model, x, labels, targets, max_chunks: int):
    step = SplitStep(model, model, max_chunks, CPU, amp=False)
    aux, named = step.forward(x)
    pred = named["plain"]
    loss = batch_loss(aux, pred, labels, targets)
    step.backward(loss)
    return loss.detach(), pred.detach()


@pytest.mark.parametrize(("n", "max_chunks", "parts"), [(10, 4, 3), (9, 3, 3), (8, 7, 2)])
def test_split_gradients_equal_the_whole_batch_losses_gradients(setup, n, max_chunks, parts):
    cfg, model = setup
    x, labels, targets = make_batch(n, cfg)
    ref_model = copy.deepcopy(model)
    torch.manual_seed(7)  # the same dropout masks for both, if the split replays them
    ref_loss, ref_pred = reference_step(ref_model, x, labels, targets, parts)
    ref_rng = torch.get_rng_state()
    torch.manual_seed(7)
    loss, pred = split_step(model, x, labels, targets, max_chunks)

    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(pred, ref_pred)
    for (name, p), ref in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, ref.grad, rtol=1e-4, atol=1e-6, msg=name)
    # running statistics: one update per micro-batch, as in the reference, not two
    for buf, ref in zip(model.buffers(), ref_model.buffers(), strict=True):
        torch.testing.assert_close(buf, ref)
    # the generator ends where one forward pass leaves it, not two passes on
    assert torch.equal(torch.get_rng_state(), ref_rng)


def test_a_batch_within_the_limit_takes_one_ordinary_pass(setup):
    cfg, model = setup
    x, labels, targets = make_batch(6, cfg)
    step = SplitStep(model, model, 6, CPU, amp=False)
    aux, named = step.forward(x)
    pred = named["plain"]
    assert pred.grad_fn is not None  # the network's own graph, no detached leaves
    step.backward(batch_loss(aux, pred, labels, targets))
    assert all(p.grad is not None for p in model.parameters())


def test_no_saved_activation_spans_more_than_max_chunks(setup):
    cfg, model = setup
    x, labels, targets = make_batch(11, cfg)
    with saved_activation_rows(model) as rows:
        split_step(model, x, labels, targets, max_chunks=4)
    assert rows and max(rows) == 4  # 11 chunks as 4 + 4 + 3

    with saved_activation_rows(model) as rows:
        split_step(model, x, labels, targets, max_chunks=0)
    assert max(rows) == 11


@pytest.mark.parametrize(("n", "max_chunks", "parts"), [(10, 4, 3), (8, 0, 1)])
def test_a_per_chunk_loss_takes_one_pass_with_the_whole_batch_gradients(
    setup, n, max_chunks, parts
):
    cfg, model = setup
    x, labels, targets = make_batch(n, cfg)
    ref_model = copy.deepcopy(model)
    torch.manual_seed(7)
    ref_loss, _ = reference_step(
        ref_model, x, labels, targets, parts, lambda *a: 0.5 * cross_entropy_only(*a)
    )
    ref_rng = torch.get_rng_state()

    torch.manual_seed(7)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    step = SplitStep(model, model, max_chunks, CPU, amp=False)
    loss = step.per_chunk(x, lambda out, rows: F.cross_entropy(out[0], labels[rows]), weight=0.5)

    assert len(calls) == parts  # each micro-batch through the network once
    torch.testing.assert_close(0.5 * loss, ref_loss)
    for (name, p), ref in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert (p.grad is None) == (ref.grad is None), name  # the regressor: unused, no gradient
        if ref.grad is not None:
            torch.testing.assert_close(p.grad, ref.grad, rtol=1e-4, atol=1e-6, msg=name)
    for buf, ref in zip(model.buffers(), ref_model.buffers(), strict=True):
        torch.testing.assert_close(buf, ref)
    assert torch.equal(torch.get_rng_state(), ref_rng)


def test_in_a_split_step_an_output_the_loss_never_used_gives_no_gradient(setup):
    """As in an unsplit step: the regressor stays without gradient (an optimiser then leaves it
    alone instead of stepping on zeros) while the rest of the network gets one."""
    cfg, model = setup
    x, labels, _ = make_batch(10, cfg)
    step = SplitStep(model, model, 4, CPU, amp=False)
    aux, _ = step.forward(x)
    step.backward(F.cross_entropy(aux, labels))
    assert all(p.grad is None for p in model.regressor.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.cluster.parameters())


def test_a_negative_micro_batch_size_is_a_config_error():
    with pytest.raises(ConfigError, match="train.micro_batch_chunks"):
        load_config(overrides=["data.root=unused", "train.micro_batch_chunks=-1"])


def rank_slice(cfg, rank: int):
    """Rank ``rank``'s 5 rows of a 10-row batch."""
    return (t.tensor_split(2)[rank] for t in make_batch(10, cfg))


def _ddp_rank(rank: int, port: int, per_chunk: bool, results) -> None:
    """One of two gloo ranks: its slice of the batch, split in micro-batches of 2, under DDP."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg, N_MELS).train()
    net = distributed.wrap(model, distributed.World(rank, 2))
    x, labels, targets = rank_slice(cfg, rank)
    torch.manual_seed(7 + rank)
    step = SplitStep(model, net, 2, CPU, amp=False)
    if per_chunk:
        step.per_chunk(x, lambda out, rows: F.cross_entropy(out[0], labels[rows]))
    else:
        aux, named = step.forward(x)
        pred = named["plain"]
        step.backward(batch_loss(aux, pred, labels, targets))
    results[rank] = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("per_chunk", [False, True], ids=["two-pass", "per-chunk"])
def test_under_ddp_a_split_step_all_reduces_the_ranks_slice_gradients(per_chunk):
    """DDP with ``no_sync`` on all but the last micro-batch: each rank ends with the average of the
    ranks' exact slice gradients (the same on both ranks)."""
    loss_fn = cross_entropy_only if per_chunk else batch_loss
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_rank, args=(free_port(), per_chunk, results), nprocs=2)
        results = dict(results)
    cfg = tiny_config()
    expected = []
    for rank in range(2):
        x, labels, targets = rank_slice(cfg, rank)
        torch.manual_seed(0)
        model = build_model(cfg, N_MELS).train()
        torch.manual_seed(7 + rank)
        reference_step(model, x, labels, targets, 3, loss_fn)  # 5 rows in micro-batches of 2
        expected.append([p.grad for p in model.parameters()])
    for got in (results[0], results[1]):
        for g, e0, e1 in zip(got, *expected, strict=True):
            if e0 is None:  # the regressor, which the cross-entropy never uses
                assert g is None and per_chunk
            else:
                torch.testing.assert_close(g, (e0 + e1) / 2, rtol=1e-4, atol=1e-6)
