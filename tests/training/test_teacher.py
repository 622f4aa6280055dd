"""The statistics teacher (``train.teacher_weight``): its statistics, its ridge, and what its term
does to a real run: the model comes to agree with it on the unlabelled utterances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.errors import ConfigError
from deepemocluster.inference import predict_utterances
from deepemocluster.metrics import ccc
from deepemocluster.ridge import fit_ridge
from deepemocluster.training import teacher as teacher_module
from deepemocluster.training.data import build_data
from deepemocluster.training.run import run
from deepemocluster.training.teacher import utterance_statistics

pytestmark = pytest.mark.slow

HALF_LABELLED = "data.label_fraction=0.5"
TEACHER = (HALF_LABELLED, "train.teacher_weight=1")


def test_utterance_statistics_are_the_mean_of_each_chunks_own(demo, tmp_path):
    data = build_data(load_corpus(cfg := demo.config(tmp_path, "x")), cfg)
    stats = utterance_statistics(data.dev, np.arange(4))
    chunks = data.dev.chunk_batch(np.arange(4 * data.dev.n_chunks))[0].numpy().astype(np.float64)
    chunks = chunks.reshape(4, data.dev.n_chunks, *chunks.shape[1:])  # (U, C, frames, mels)
    delta = np.diff(chunks, axis=2)
    expected = np.concatenate(
        [chunks.mean(2), chunks.std(2, ddof=1), delta.std(2, ddof=1)], axis=2
    ).mean(1)
    assert stats.shape == (4, 3 * cfg.features.n_mels)
    assert np.allclose(stats, expected, atol=1e-5)


def test_utterance_statistics_do_not_depend_on_batching_or_order(demo, tmp_path, monkeypatch):
    data = build_data(load_corpus(cfg := demo.config(tmp_path, "x")), cfg)
    every = utterance_statistics(data.dev, np.arange(len(data.dev)))
    monkeypatch.setattr(teacher_module, "BATCH_CHUNKS", 2 * data.dev.n_chunks)  # 2 per read
    picked = np.array([5, 0, 3, 4, 1])
    assert np.array_equal(utterance_statistics(data.dev, picked), every[picked])


def test_the_teacher_is_the_dev_chosen_ridge_of_the_labelled_utterances(demo, tmp_path):
    cfg = demo.config(tmp_path, "x", *TEACHER)
    corpus = load_corpus(cfg)
    data = build_data(corpus, cfg)
    teacher = data.teacher
    assert teacher.ratings.shape == (len(data.train), len(cfg.model.attributes))
    x = utterance_statistics(data.train, np.arange(len(data.train)))
    dev_y = data.scaler.normalise(corpus.ratings(data.dev.rows, list(cfg.model.attributes)))
    ridge = fit_ridge(
        x[: data.n_labelled],
        data.train.targets[: data.n_labelled].numpy(),
        utterance_statistics(data.dev, np.arange(len(data.dev))),
        dev_y,
    )
    assert np.allclose(teacher.ratings.numpy(), ridge.predict(x), atol=1e-5)
    assert np.array_equal(teacher.dev_ccc, ridge.dev_ccc)
    # arousal shows in the spectrum: even 24 labelled demo utterances teach a linear model it
    assert teacher.dev_ccc[0] > 0.3
    # a resumed run rebuilds the same teacher
    assert torch.equal(build_data(corpus, cfg).teacher.ratings, teacher.ratings)
    # without the option there is no teacher, and nothing is computed for it
    assert build_data(corpus, demo.config(tmp_path, "x")).teacher is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("train.teacher_weight=-1",), "train.teacher_weight must be ≥ 0"),
        (("train.teacher_weight=1", "model.aux_head=none"), "only model.aux_head=cluster"),
    ],
)
def test_teacher_settings_that_cannot_work_are_refused(demo, tmp_path, extra, message):
    cfg = demo.config(tmp_path, "x", *extra)
    with pytest.raises(ConfigError, match=message):
        build_data(load_corpus(cfg), cfg)


def test_the_teacher_term_makes_the_model_agree_with_the_teacher(demo, tmp_path):
    """The same tiny run with the regressor's own CCC off, with and without the teacher: only the
    teacher term tells the regressor anything, so only then do its predictions on the unlabelled
    utterances follow the teacher's."""
    agreement = {}
    for weight in (0, 1):
        cfg = demo.config(
            tmp_path / "runs",
            f"w{weight}",
            HALF_LABELLED,
            f"train.teacher_weight={weight}",
            "train.ccc_weight=0",
            "train.epochs=6",
        )
        run(cfg)
        folder = tmp_path / "runs" / f"w{weight}"
        _, model = Checkpoint.load(folder / "checkpoint_best.pt").restore_model()
        data = build_data(load_corpus(cfg), demo.config(tmp_path, "x", *TEACHER))
        predicted = predict_utterances(model, data.train, 128, torch.device("cpu"))
        unlabelled = slice(data.n_labelled, None)
        agreement[weight] = np.mean(
            [
                ccc(data.teacher.ratings[unlabelled, j].numpy(), predicted[unlabelled, j])
                for j in range(predicted.shape[1])
            ]
        )
        log = (folder / "train.log").read_text()
        assert ("train/loss_teacher=" in log) == bool(weight)
        assert ("teacher/dev_ccc_valence=" in log) == bool(weight)
    assert agreement[1] > 0.5, agreement
    assert agreement[1] > agreement[0] + 0.3, agreement
