"""Chunk → utterance pooling: shapes, padding that cannot matter, gradients, the exact `mean` rule,
checkpoints of `mean` models keeping their keys. What attention learns that the mean cannot is
tested through a real training run (tests/training/test_trainer_pooling.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.config import load_config
from deepemocluster.errors import ConfigError
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.build import build_model
from deepemocluster.model.pooling import AttentionPooling, chunk_mask, mean_over_chunks, pad
from tests.support.tiny_config import TINY_MODEL

N_MELS, FRAMES, K = 32, 62, 4


def _model(pooling: str, *extra: str) -> DeepEmoCluster:
    cfg = load_config(
        overrides=["data.root=unused", *TINY_MODEL, f"cluster.k={K}", f"model.pooling={pooling}"]
        + list(extra)
    )
    torch.manual_seed(0)
    return build_model(cfg, N_MELS)


def _chunks(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, FRAMES, N_MELS, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_shapes_with_unequal_chunk_counts(pooling: str) -> None:
    model = _model(pooling)
    counts = torch.tensor([3, 1, 2])
    out = model.forward_utterances(_chunks(6), counts)
    assert out.aux.shape == (6, K)  # the cluster head stays per chunk
    assert out.prediction.shape == (3, 3)
    assert (out.chunks is None) == (pooling == "attention")
    if pooling == "mean":
        assert out.chunks["prediction"].shape == (6, 3)


def test_attention_ignores_whatever_fills_the_padding() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(8, 16)
    counts = torch.tensor([4, 2, 1])
    padded, mask = pad(torch.randn(7, 8), counts)
    outputs = []
    for filler in (0.0, 1e6, float("nan"), float("inf")):
        garbage = padded.clone()
        garbage[~mask] = filler
        outputs.append(pool(garbage, mask))
    for other in outputs[1:]:
        assert torch.equal(outputs[0], other)
    w = pool.weights(padded, mask)
    assert torch.equal(w[~mask], torch.zeros(int((~mask).sum())))
    assert torch.allclose(w.sum(1), torch.ones(3))
    assert w[0].std() > 0  # learned weights, not a plain mean
    # an utterance with fewer real chunks is pooled as it would be alone
    alone = pool(padded[1:2, :2], mask[1:2, :2])
    assert torch.allclose(outputs[0][1:2], alone, atol=1e-6)
    # one chunk: the pooled vector is that chunk's embedding
    assert torch.allclose(outputs[0][2], padded[2, 0])


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_padded_chunks_never_reach_the_network(pooling: str) -> None:
    """In training mode too: padded chunks would otherwise enter BatchNorm's batch statistics."""
    model = _model(pooling).train()
    chunks, mask = _chunks(12).reshape(3, 4, FRAMES, N_MELS), chunk_mask(torch.tensor([4, 2, 3]))
    outputs = []
    for seed in (1, 2):
        garbage = chunks.clone()
        garbage[~mask] = _chunks(int((~mask).sum()), seed) * 100
        torch.manual_seed(0)  # the same dropout masks
        outputs.append(model.predict_utterances(garbage, mask))
    assert torch.equal(*outputs)
    torch.manual_seed(0)
    flat = model.forward_utterances(chunks[mask], torch.tensor([4, 2, 3])).prediction
    assert torch.equal(outputs[0], flat)


def test_gradients_reach_the_encoder_through_attention() -> None:
    model = _model("attention").train()
    out = model.forward_utterances(_chunks(6), torch.tensor([2, 4]))
    out.prediction.sum().backward()
    for name, p in [*model.encoder.named_parameters(), *model.pooling.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mean_is_the_mean_of_chunk_predictions_to_the_last_bit() -> None:
    """What evaluation does today: numpy's mean over each utterance's chunk predictions."""
    model = _model("mean", "chunking.n_chunks=5").eval()
    x = _chunks(8 * 5)
    with torch.no_grad():
        chunk_pred = model(x)[1]["prediction"].numpy()
        out = model.forward_utterances(x, torch.full((8,), 5))
    assert torch.equal(out.chunks["prediction"], torch.from_numpy(chunk_pred))
    assert np.array_equal(out.prediction.numpy(), chunk_pred.reshape(8, 5, -1).mean(axis=1))
    counts = [5, 1, 3]
    with torch.no_grad():
        uneven = model.forward_utterances(x[:9], torch.tensor(counts))
    chunk_pred, utterances = uneven.chunks["prediction"].numpy(), uneven.prediction.numpy()
    ends = np.cumsum(counts)
    for u, (start, end) in enumerate(zip(ends - counts, ends, strict=True)):
        assert np.array_equal(utterances[u], chunk_pred[start:end].mean(axis=0))


def test_mean_over_chunks_ignores_padding() -> None:
    padded, mask = pad(torch.arange(12.0).reshape(6, 2), torch.tensor([1, 3, 2]))
    padded[~mask] = float("nan")
    expected = torch.tensor([[0.0, 1.0], [4.0, 5.0], [9.0, 10.0]])
    assert torch.equal(mean_over_chunks(padded, mask), expected)


def test_mean_models_keep_their_checkpoint_keys() -> None:
    """A `mean` model is built as before pooling existed; `attention` adds its scorer only."""
    mean = _model("mean")
    before = DeepEmoCluster(mean.encoder, mean.cluster, mean.regressor)
    assert list(mean.state_dict()) == list(before.state_dict())
    extra = set(_model("attention").state_dict()) - set(mean.state_dict())
    assert extra == {f"pooling.score.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}


def test_bad_chunk_counts_are_refused() -> None:
    model = _model("attention")
    with pytest.raises(ValueError, match="add up to 5, but 6 chunks"):
        model.forward_utterances(_chunks(6), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="at least one chunk"):
        model.forward_utterances(_chunks(3), torch.tensor([3, 0]))


def test_unknown_pooling_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.pooling"):
        load_config(overrides=["data.root=unused", "model.pooling=max"])
