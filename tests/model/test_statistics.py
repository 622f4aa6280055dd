"""model.statistics: what the statistics are, and that the regressor (and only the regressor)
sees them. Its ONNX export is tested in tests/test_export.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.statistics import ChunkStatistics
from tests.support.tiny_model import N_MELS, random_chunks, tiny_model


def _model(statistics: bool, pooling: str = "mean") -> DeepEmoCluster:
    return tiny_model(f"model.statistics={statistics}", f"model.pooling={pooling}")


def test_per_bin_mean_std_and_delta_std_over_the_frames():
    x = random_chunks(3)
    got = ChunkStatistics(N_MELS)(x).numpy()
    a = x.numpy().astype(np.float64)
    expected = np.concatenate(
        [a.mean(1), a.std(1, ddof=1), np.diff(a, axis=1).std(1, ddof=1)], axis=1
    )
    assert got.shape == (3, 3 * N_MELS)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_the_regressor_reads_the_statistics_and_the_cluster_head_does_not(pooling):
    plain, with_stats = _model(False, pooling), _model(True, pooling)
    embed_dim = plain.encoder.dense[0].out_features
    first = with_stats.regressor.net[0]
    assert first.in_features == embed_dim + 3 * N_MELS
    x, counts = random_chunks(6), torch.tensor([4, 2])
    # same seed, same encoder and cluster head: identical cluster logits
    torch.testing.assert_close(
        with_stats.forward_utterances(x, counts).aux, plain.forward_utterances(x, counts).aux
    )
    # blind the regressor to the CNN embedding: only the statistics can still move its output
    with torch.no_grad():
        first.weight[:, :embed_dim] = 0
        plain.regressor.net[0].weight.zero_()
    louder = x + torch.linspace(0, 1, N_MELS)  # another spectral envelope
    assert not torch.allclose(
        with_stats.forward_utterances(x, counts).prediction,
        with_stats.forward_utterances(louder, counts).prediction,
    )
    torch.testing.assert_close(
        plain.forward_utterances(x, counts).prediction,
        plain.forward_utterances(louder, counts).prediction,
    )


def test_gradients_reach_the_encoder_and_the_statistics_weights():
    model = _model(True).train()
    pred = model(random_chunks(8))[1]["prediction"]
    pred.square().mean().backward()
    embed_dim = model.encoder.dense[0].out_features
    assert model.encoder.blocks[0][0].weight.grad.abs().sum() > 0
    assert model.regressor.net[0].weight.grad[:, embed_dim:].abs().sum() > 0
