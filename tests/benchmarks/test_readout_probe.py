"""benchmarks/readout_probe.py on the shared tiny run: the model's own Test CCC is the one its
training recorded, the pooled-statistics ridge is the quality benchmark's, and the parts have
the widths the model gives them."""

from __future__ import annotations

import json

import pytest

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config.schema import ATTRIBUTES
from deepemocluster.data.corpus import load_corpus
from deepemocluster.training.data import build_data
from tests.support.bench import load_benchmark, machine_ok

probe = load_benchmark("readout_probe")
pooled_ridge = load_benchmark("pooled_ridge")


@pytest.mark.slow
def test_readout_probe_scores_the_run_as_training_did(trained_run, tmp_path):
    out = tmp_path / "probe.json"
    assert probe.main([str(trained_run.run_dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    machine_ok(result["machine"])
    (run,) = result["runs"]
    for attribute in ATTRIBUTES:
        assert run["model"][attribute] == pytest.approx(
            trained_run.test[f"test/ccc_{attribute}"], abs=1e-5
        )
    cfg, model = Checkpoint.load(trained_run.checkpoint).restore_model()
    corpus = load_corpus(cfg)
    expected = pooled_ridge.ridge_scores(corpus, cfg)
    for attribute in ATTRIBUTES:
        assert run["ridge"]["pooled statistics"][attribute] == expected[attribute]["ccc"]
    assert set(run["ridge"]) == set(probe.PARTS)
    for scores in run["ridge"].values():
        assert all(-1 <= scores[a] <= 1 for a in ATTRIBUTES)

    data = build_data(corpus, cfg)
    parts = probe.utterance_parts(model, data.dev, 3)
    n_mels = cfg.features.n_mels
    assert parts["embedding"].shape == (3, cfg.model.embed_dim)
    assert parts["statistics"].shape == (3, 3 * n_mels)
    # the statistics of an utterance are the mean of its chunks' own: the first bin's mean
    chunks = data.dev.chunk_batch([0, 1, 2])[0]
    assert parts["statistics"][0, 0] == pytest.approx(float(chunks[:, :, 0].mean()), abs=1e-5)

    (cell,) = result["summary"].values()
    assert cell["seeds"] == [cfg.train.seed]
    assert cell["model"]["mean"]["mean"] == pytest.approx(run["model"]["mean"])
    assert cell["model"]["mean"]["ci95"] is None
