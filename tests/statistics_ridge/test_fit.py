"""The ridge on the chunk statistics and its two uses: the readout (``model.ridge_readout``) a run
starts from and keeps, and the teacher (``train.teacher_weight``), whose term makes a real run's
model agree with it on the unlabelled utterances (``StatisticsRidgeExtension``). The readout
module itself: test_readout.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.samplers import UtteranceBatch
from deepemocluster.errors import ConfigError
from deepemocluster.losses import ccc_loss
from deepemocluster.metrics import ccc
from deepemocluster.serving.inference import predict_utterances
from deepemocluster.statistics_ridge import fit
from deepemocluster.statistics_ridge.extension import StatisticsRidgeExtension
from deepemocluster.statistics_ridge.fit import FOLDS, utterance_statistics
from deepemocluster.statistics_ridge.readout import choose_mixes
from deepemocluster.statistics_ridge.ridge import fit_ridge
from deepemocluster.training.data import build_data
from deepemocluster.training.run import run
from deepemocluster.training.step import TrainingStep
from deepemocluster.training.trainer import Trainer
from tests.support.resume import second_epoch_straight_and_resumed

pytestmark = pytest.mark.slow

HALF_LABELLED = "data.label_fraction=0.5"
TEACHER = (HALF_LABELLED, "train.teacher_weight=1")
READOUT = (HALF_LABELLED, "model.statistics=true", "model.ridge_readout=true")
CPU = torch.device("cpu")


def _extension(cfg, data) -> StatisticsRidgeExtension | None:
    return StatisticsRidgeExtension.for_run(cfg, data)


def _ratings(extension: StatisticsRidgeExtension | None, term: str):
    """The ratings the extension's ``term`` ("teacher" or "readout") trains against, or None."""
    terms = [t for t in extension.loss_terms() if t.name == term] if extension else []
    return terms[0].ratings if terms else None


def _silence(model) -> None:
    """Zero the last layer of the regressor and of the readout's residual regressor: the plain
    outputs are then 0 and the readout's predictions the ridge's ratings alone."""
    with torch.no_grad():
        for regressor in (model.regressor, model.readout.residual):
            regressor.net[-1].weight.zero_()
            regressor.net[-1].bias.zero_()


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
    monkeypatch.setattr(fit, "BATCH_CHUNKS", 2 * data.dev.n_chunks)  # 2 per read
    picked = np.array([5, 0, 3, 4, 1])
    assert np.array_equal(utterance_statistics(data.dev, picked), every[picked])


def test_the_teacher_is_the_dev_chosen_ridge_of_the_labelled_utterances(demo, tmp_path):
    cfg = demo.config(tmp_path, "x", *TEACHER)
    corpus = load_corpus(cfg)
    data = build_data(corpus, cfg)
    extension = _extension(cfg, data)
    ratings = _ratings(extension, "teacher")
    assert ratings.shape == (len(data.train), len(cfg.model.attributes))
    x = utterance_statistics(data.train, np.arange(len(data.train)))
    dev_y = data.scaler.normalise(corpus.ratings(data.dev.rows, list(cfg.model.attributes)))
    ridge = fit_ridge(
        x[: data.n_labelled],
        data.train.targets[: data.n_labelled].numpy(),
        utterance_statistics(data.dev, np.arange(len(data.dev))),
        dev_y,
    )
    assert np.allclose(ratings.numpy(), ridge.predict(x), atol=1e-5)
    assert np.array_equal(extension.fitted.ridge.dev_ccc, ridge.dev_ccc)
    # arousal shows in the spectrum: even 24 labelled demo utterances teach a linear model it
    assert ridge.dev_ccc[0] > 0.3
    # a resumed run rebuilds the same teacher
    assert torch.equal(_ratings(_extension(cfg, build_data(corpus, cfg)), "teacher"), ratings)
    # the readout alone fits the same ridge, and gives no teacher ratings
    readout_cfg = demo.config(tmp_path, "x", *READOUT)
    readout = _extension(readout_cfg, build_data(corpus, readout_cfg))
    assert _ratings(readout, "teacher") is None
    assert np.array_equal(readout.fitted.ridge.weights, ridge.weights)
    # with neither there is no ridge, and nothing is computed for it
    plain_cfg = demo.config(tmp_path, "x")
    assert _extension(plain_cfg, build_data(corpus, plain_cfg)) is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("train.teacher_weight=-1",), "train.teacher_weight must be ≥ 0"),
        (("train.teacher_weight=1", "model.aux_head=none"), "only model.aux_head=cluster"),
    ],
)
def test_teacher_settings_that_cannot_work_are_refused(demo, tmp_path, extra, message):
    cfg = demo.config(tmp_path, "x", *extra)
    data = build_data(load_corpus(cfg), cfg)
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg, data, CPU)


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
        teacher_cfg = demo.config(tmp_path, "x", *TEACHER)
        data = build_data(load_corpus(cfg), teacher_cfg)
        teacher = _ratings(_extension(teacher_cfg, data), "teacher")
        predicted = predict_utterances(model, data.train, 128, torch.device("cpu"))
        unlabelled = slice(data.n_labelled, None)
        agreement[weight] = np.mean(
            [
                ccc(teacher[unlabelled, j].numpy(), predicted[unlabelled, j])
                for j in range(predicted.shape[1])
            ]
        )
        log = (folder / "train.log").read_text()
        assert ("train/loss_teacher=" in log) == bool(weight)
        assert ("statistics_ridge/dev_ccc_valence=" in log) == bool(weight)
    assert agreement[1] > 0.5, agreement
    assert agreement[1] > agreement[0] + 0.3, agreement


def test_in_training_the_readout_rates_a_labelled_utterance_out_of_fold(demo, tmp_path):
    """Each labelled utterance's training rating comes from the ridge fit on the other folds
    (every FOLDS-th utterance held out), each unlabelled one's from the ridge of them all."""
    cfg = demo.config(tmp_path, "x", *READOUT)
    corpus = load_corpus(cfg)
    data = build_data(corpus, cfg)
    n = data.n_labelled
    x = utterance_statistics(data.train, np.arange(len(data.train)))
    y = data.train.targets[:n].numpy()
    dev_x = utterance_statistics(data.dev, np.arange(len(data.dev)))
    dev_y = data.scaler.normalise(corpus.ratings(data.dev.rows, list(cfg.model.attributes)))
    held = np.arange(n) % FOLDS == 2
    fold_ridge = fit_ridge(x[:n][~held], y[~held], dev_x, dev_y)
    extension = _extension(cfg, data)
    ratings = _ratings(extension, "readout").numpy()
    assert ratings.shape == (len(data.train), len(cfg.model.attributes))
    assert np.allclose(ratings[:n][held], fold_ridge.predict(x[:n][held]), atol=1e-5)
    full = extension.fitted.ridge.predict(x)
    assert np.allclose(ratings[n:], full[n:], atol=1e-5)
    # the point of the folds: the full ridge rates its own training utterances differently
    assert np.abs(ratings[:n] - full[:n]).max() > 0.05


def test_a_training_step_adds_the_readouts_utterance_ratings_to_the_residual_outputs(
    demo, tmp_path
):
    """With both regressors' outputs zeroed, the readout's CCC loss is that of the readout's
    out-of-fold training ratings: its term adds them, not the network's in-model ridge."""
    cfg = demo.config(tmp_path, "x", *READOUT)
    data = build_data(load_corpus(cfg), cfg)
    trainer = Trainer(cfg, data, torch.device("cpu"))
    _silence(trainer.model)
    trainer.model.train()
    C = data.train.n_chunks
    ids = np.array([0, 1, 2 * C, 5 * C + 1, 9 * C, (data.n_labelled + 3) * C])
    batch = UtteranceBatch.of(ids, C, 0)
    cpu = torch.device("cpu")
    step = TrainingStep(trainer.model, trainer.model, data, cpu, None, False, trainer.terms)
    losses = step(data.train.chunk_batch(batch.ids)[0], batch, None)
    utterances = ids // C
    rated = utterances < data.n_labelled
    readout = _ratings(_extension(cfg, data), "readout")
    expected = ccc_loss(readout[utterances[rated]], data.train.targets[utterances[rated]])
    assert losses.terms["train/loss_readout"] == pytest.approx(expected.item(), abs=1e-6)
    assert losses.terms["train/loss_ccc"] == pytest.approx(1.0, abs=1e-6)  # constant: CCC 0


def test_each_attribute_takes_the_mix_that_scores_highest_on_development(demo, tmp_path):
    """At every evaluation the trainer scores each attribute's mixes of the plain prediction
    and the readout's on Development and keeps the best in ``readout.mix``, which the best
    checkpoint carries."""
    cfg = demo.config(tmp_path / "runs", "mix", *READOUT, "train.epochs=1")
    data = build_data(load_corpus(cfg), cfg)
    trainer = Trainer(cfg, data, torch.device("cpu"))
    model, attributes = trainer.model, list(cfg.model.attributes)
    ratings = data.ratings(data.dev, attributes)

    def dev_predictions(mix: float) -> np.ndarray:
        model.readout.mix.fill_(mix)
        return data.scaler.restore(predict_utterances(model, data.dev, 128, trainer.device))

    # a network that says nothing: the plain outputs are constant (CCC 0) and the readout's
    # predictions are the ridge's, whose CCC half of them (the mix 0.5) would only lower
    _silence(model)
    ridge_ccc = [ccc(ratings[:, j], dev_predictions(1.0)[:, j]) for j in range(len(attributes))]
    report = trainer.evaluate_dev()
    assert model.readout.mix.tolist() == [1.0] * len(attributes)
    assert [report[f"ccc_{a}"] for a in attributes] == pytest.approx(ridge_ccc, abs=1e-6)
    # untrained last layers: whichever mix scores highest
    torch.manual_seed(3)
    model.regressor.net[-1].reset_parameters()
    model.readout.residual.net[-1].reset_parameters()
    mixes, scores = choose_mixes(ratings, dev_predictions(0.0), dev_predictions(1.0))
    report = trainer.evaluate_dev()
    assert model.readout.mix.tolist() == mixes.tolist()
    assert [report[f"ccc_{a}"] for a in attributes] == pytest.approx(scores, abs=1e-6)
    assert report["ccc_mean"] == pytest.approx(scores.mean(), abs=1e-6)
    # a real run: the best checkpoint carries the mixes its best epoch chose
    run(cfg)
    folder = tmp_path / "runs" / "mix"
    _, trained = Checkpoint.load(folder / "checkpoint_best.pt").restore_model()
    log = (folder / "train.log").read_text()
    for a, mix in zip(attributes, trained.readout.mix.tolist(), strict=True):
        assert f"dev/readout_mix_{a}={mix:.4g}  " in log


def test_a_run_starts_from_the_ridge_and_keeps_it(demo, tmp_path):
    """The trainer's model adds the ridge's rating of each utterance (the network's share zeroed
    here, so nothing else is left); a real run logs the ridge's Development CCC and saves the
    same readout in its best checkpoint."""
    cfg = demo.config(tmp_path / "runs", "readout", *READOUT, "train.epochs=1")
    data = build_data(load_corpus(cfg), cfg)
    model = Trainer(cfg, data, torch.device("cpu")).model
    _silence(model)
    predicted = predict_utterances(model, data.test, 128, torch.device("cpu"))
    stats = utterance_statistics(data.test, np.arange(len(data.test)))
    ridge = _extension(cfg, data).fitted.ridge
    assert np.allclose(predicted, ridge.predict(stats), atol=1e-4)
    run(cfg)
    folder = tmp_path / "runs" / "readout"
    _, trained = Checkpoint.load(folder / "checkpoint_best.pt").restore_model()
    assert torch.equal(trained.readout.weight, model.readout.weight)
    assert torch.equal(trained.readout.bias, model.readout.bias)
    assert "statistics_ridge/dev_ccc_valence=" in (folder / "train.log").read_text()


def test_a_run_started_from_another_runs_weights_keeps_its_own_ridge(demo, tmp_path):
    """Transfer: the weights come from the other run, the ridge stays the one fit on this run's
    labelled utterances, whose out-of-fold ratings its step trains against."""
    source = Trainer(
        cfg := demo.config(tmp_path, "x", *READOUT), build_data(load_corpus(cfg), cfg), CPU
    )
    other = demo.config(tmp_path, "x", *READOUT, "train.seed=1")  # other labelled utterances
    target = Trainer(other, build_data(load_corpus(other), other), CPU)
    ridge_weight = target.model.readout.weight.clone()
    assert not torch.equal(ridge_weight, source.model.readout.weight)
    target.start_from(source.model.state_dict())
    assert torch.equal(target.model.readout.weight, ridge_weight)
    for name, value in source.model.state_dict().items():
        if not name.startswith(("readout.weight", "readout.bias")):
            assert torch.equal(target.model.state_dict()[name], value), name


def test_a_resumed_epoch_with_the_readout_matches_the_uninterrupted_one(demo, tmp_path):
    cfg = demo.config(tmp_path, "x", *READOUT, "train.micro_batch_chunks=5")
    second, resumed = second_epoch_straight_and_resumed(
        cfg, build_data(load_corpus(cfg), cfg), tmp_path
    )
    assert resumed == second
    assert {"train/loss_ce", "train/loss_ccc"} <= set(second)
