"""model.ridge_readout: each attribute's prediction mixes the regressor's plain output with the
residual regressor's output plus the ridge's rating of the utterance, on every path a prediction
takes, the ridge in float32 under bfloat16 autocast; training and eval mode give the same named
outputs (the step reads ``plain`` and ``residual``); only the plain outputs train the encoder;
the ridge never learns; Development picks each mix. How it is fit and mixed in a run is tested
in tests/statistics_ridge/test_fit.py; its ONNX export in tests/serving/test_export.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.metrics import ccc
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.pooling import chunk_mask
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.statistics_ridge.readout import choose_mixes
from deepemocluster.statistics_ridge.ridge import Ridge, fit_ridge
from tests.support.tiny_model import FRAMES, N_MELS, random_chunks, tiny_model

COUNTS, N_ATTRIBUTES = [3, 1, 2], 3


def _model(readout: bool, pooling: str = "mean") -> DeepEmoCluster:
    return tiny_model(
        "model.statistics=true", f"model.pooling={pooling}", f"model.ridge_readout={readout}"
    )


def _ridge() -> Ridge:
    """A ridge fit on the mean statistics of random utterances, with ratings that depend on
    them, so its weights, standardisation and intercept are all far from trivial."""
    stats = ChunkStatistics(N_MELS)(random_chunks(40 * 2, seed=1)).double().numpy()
    x = stats.reshape(40, 2, -1).mean(1)
    y = x[:, :3] * [2.0, -1.0, 0.5] + [1.0, 0.0, -2.0]
    ridge = fit_ridge(x[:30], y[:30], x[30:], y[30:])
    assert np.abs(ridge.intercept).max() > 0.1 and np.abs(ridge.mean).max() > 0.1
    return ridge


def _utterance_ratings(ridge: Ridge, chunks: torch.Tensor, counts: list[int]) -> torch.Tensor:
    stats = ChunkStatistics(N_MELS)(chunks).double().numpy()
    ends = np.cumsum(counts)
    means = np.stack([stats[e - c : e].mean(0) for c, e in zip(counts, ends, strict=True)])
    return torch.from_numpy(ridge.predict(means)).float()


def _twin_outputs(model: DeepEmoCluster) -> None:
    """Make the residual regressor equal the plain one, so that a prediction through the
    readout differs from the plain one by exactly the ridge's rating."""
    model.readout.residual.load_state_dict(model.regressor.state_dict())


def _paths(model: DeepEmoCluster, x: torch.Tensor) -> list[torch.Tensor]:
    """A/V/D on every path a prediction takes: whole utterances, each chunk as an utterance,
    equal utterances (the ONNX graph's path), padded utterances (whatever fills the padding)."""
    padded = random_chunks(3 * 3, seed=2).reshape(3, 3, FRAMES, N_MELS) * 100
    mask = chunk_mask(torch.tensor(COUNTS), 3)
    padded[mask] = x
    with torch.no_grad():
        return [
            model.forward_utterances(x, torch.tensor(COUNTS)).prediction,
            model(x)[1]["prediction"],
            model.equal_utterances(x, 2)[1],
            model.predict_utterances(padded, mask),
        ]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_every_prediction_path_adds_the_ridges_rating_of_the_utterance_at_its_mix(pooling):
    ridge, model = _ridge(), _model(True, pooling)
    model.readout.load_ridge(ridge)
    _twin_outputs(model)
    x = random_chunks(sum(COUNTS))
    model.readout.mix.fill_(0.0)
    plain = _paths(model, x)
    model.readout.mix.fill_(1.0)
    read_out = _paths(model, x)
    ratings = [_utterance_ratings(ridge, x, c) for c in (COUNTS, [1] * 6, [2, 2, 2], COUNTS)]
    for with_ridge, without, rating in zip(read_out, plain, ratings, strict=True):
        assert with_ridge.shape == (len(rating), N_ATTRIBUTES)
        torch.testing.assert_close(with_ridge - without, rating)
    # each attribute at its own mix
    model.readout.mix.copy_(torch.tensor([0.0, 1.0, 0.5]))
    for mixed, with_ridge, without in zip(_paths(model, x), read_out, plain, strict=True):
        torch.testing.assert_close(mixed[:, 0], without[:, 0])
        torch.testing.assert_close(mixed[:, 1], with_ridge[:, 1])
        torch.testing.assert_close(mixed[:, 2], (without[:, 2] + with_ridge[:, 2]) / 2)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("training", [True, False])
def test_both_modes_give_the_same_named_outputs(pooling, training):
    ridge, model = _ridge(), _model(True, pooling)
    model.readout.load_ridge(ridge)
    _twin_outputs(model)
    model.readout.mix.copy_(torch.tensor([0.0, 1.0, 0.5]))
    model.train(training)
    x = random_chunks(sum(COUNTS))
    out = model.forward_utterances(x, torch.tensor(COUNTS)).utterances
    assert set(out) == {"plain", "residual", "ridge", "read_out", "prediction"}
    # twins: the residual regressor reads the same input as the plain one, dropout included
    torch.testing.assert_close(out["residual"], out["plain"])
    torch.testing.assert_close(out["ridge"], _utterance_ratings(ridge, x, COUNTS))
    torch.testing.assert_close(
        out["read_out"], out["residual"] + out["ridge"]
    )  # per chunk, then averaged
    mix = model.readout.mix
    torch.testing.assert_close(out["prediction"], (1 - mix) * out["plain"] + mix * out["read_out"])


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_only_the_plain_outputs_train_the_encoder(pooling):
    model = _model(True, pooling).train()
    x, counts = random_chunks(sum(COUNTS)), torch.tensor(COUNTS)
    for outputs, learns in (("plain", "regressor."), ("residual", "readout.residual.")):
        model.zero_grad(set_to_none=True)
        model.forward_utterances(x, counts).utterances[outputs].sum().backward()
        reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
        assert any(n.startswith(learns) for n in reached)
        assert any(n.startswith("encoder.") for n in reached) == (learns == "regressor.")


def test_the_ridge_is_fixed_and_travels_in_the_state_dict():
    model = _model(True)
    model.readout.load_ridge(_ridge())
    weight = model.readout.weight.clone()
    learned = {n.split(".")[1] for n, _ in model.named_parameters() if n.startswith("readout.")}
    assert learned == {"residual"}
    assert {"readout.weight", "readout.bias", "readout.mix"} <= set(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.forward_utterances(random_chunks(6), torch.tensor(COUNTS)).prediction.sum().backward()
    opt.step()
    assert torch.equal(model.readout.weight, weight)
    model.readout.mix.copy_(torch.tensor([1.0, 0.0, 0.5]))
    restored = _model(True)
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.readout.weight, weight)
    assert restored.readout.mix.tolist() == [1.0, 0.0, 0.5]


def test_each_attribute_gets_the_mix_with_the_highest_ccc():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(500, 4))
    noise = rng.normal(size=(2, 500, 4))
    # attribute 0: the plain prediction is exact; 1: the readout's; 2: both equally noisy, so
    # their average is best; 3: both constant, every mix scores 0, the first wins
    plain = np.stack([y[:, 0], noise[0, :, 1], y[:, 2] + noise[0, :, 2], np.zeros(500)], 1)
    read_out = np.stack([noise[1, :, 0], y[:, 1], y[:, 2] + noise[1, :, 2], np.zeros(500)], 1)
    mixes, scores = choose_mixes(y, plain, read_out)
    assert mixes.tolist() == [0.0, 1.0, 0.5, 0.0]
    assert scores[:2] == pytest.approx([1.0, 1.0])
    assert scores[2] == pytest.approx(ccc(y[:, 2], (plain[:, 2] + read_out[:, 2]) / 2))
    assert scores[2] > max(ccc(y[:, 2], plain[:, 2]), ccc(y[:, 2], read_out[:, 2])) + 0.05
    assert scores[3] == 0.0


def test_bfloat16_autocast_keeps_the_readout_in_float32():
    model = _model(True)
    model.readout.load_ridge(_ridge())
    x = random_chunks(6)
    exact = model.readout(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = model.readout(x)
        as_matmul = model.readout.statistics(x) @ model.readout.weight  # what it would be
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, exact)
    # a bfloat16 product would have been visibly off: the test can tell the two apart
    assert (as_matmul.float() + model.readout.bias - exact).abs().max() > 1e-3
