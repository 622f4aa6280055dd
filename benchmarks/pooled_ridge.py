"""The baseline the model must beat: closed-form ridge regression on pooled statistics of each
utterance's log-mel (the run's own feature store), fit on the labelled Train utterances, alpha
chosen per attribute on Development by CCC (``deepemocluster.ridge``). ``quality.py`` scores it
beside the models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from omegaconf import DictConfig

from deepemocluster.data.corpus import Corpus
from deepemocluster.metrics import ccc
from deepemocluster.statistics_ridge.ridge import fit_ridge

STATISTICS = (
    "per mel bin: mean, std, 10/50/90th percentiles, std and mean |.| of the frame-to-frame "
    "delta; frame log-energy: the same seven; log duration (frames)"
)


def _seven(x: np.ndarray) -> np.ndarray:
    """Mean, std, 10/50/90th percentiles of ``x`` and std and mean |.| of its delta, over axis 0."""
    delta = np.diff(x, axis=0)
    return np.concatenate(
        [
            [x.mean(0), x.std(0)],
            np.percentile(x, [10, 50, 90], axis=0),
            [delta.std(0), np.abs(delta).mean(0)],
        ]
    ).ravel()


def pooled_statistics(frames: np.ndarray, log_offset: float | None = None) -> np.ndarray:
    """One utterance's (frames, n_mels) log-mel (or power mel, logged here with ``log_offset``)
    → a fixed-length vector: ``_seven`` of every bin and of the frame log-energy, log duration."""
    x = np.asarray(frames, dtype=np.float64)
    if log_offset is not None:
        x = np.log(x + log_offset)
    energy = np.logaddexp.reduce(x, axis=1)[:, None]
    return np.concatenate([_seven(x), _seven(energy), [np.log(len(x))]])


def corpus_statistics(corpus: Corpus, rows: np.ndarray, cfg: DictConfig) -> np.ndarray:
    """(len(rows), d) pooled statistics read from the run's packed feature store."""
    offset = None if cfg.features.kind == "log_mel" else cfg.features.log_offset
    packed = corpus.packed
    return np.stack(
        [
            pooled_statistics(packed.frames[packed.offsets[r] : packed.offsets[r + 1]], offset)
            for r in rows
        ]
    )


# (corpus, rows, cfg) -> (len(rows), d) features of those utterances: what a ridge anchor reads
Features = Callable[[Corpus, np.ndarray, DictConfig], np.ndarray]


def ridge_scores(
    corpus: Corpus, cfg: DictConfig, features: Features = corpus_statistics
) -> dict[str, dict[str, float]]:
    """{attribute: {"ccc": Test CCC, "alpha": chosen on Development, "dev_ccc": its Dev CCC}}
    of the ridge on ``features`` (default: the pooled log-mel statistics)."""
    attributes, splits = list(cfg.model.attributes), cfg.data.splits
    data = []
    for split in (splits.train, splits.dev, splits.test):
        rows = corpus.rows(split, labelled=True)
        data.append((features(corpus, rows, cfg), corpus.ratings(rows, attributes)))
    return select_and_score(*data, attributes)


Split = tuple[np.ndarray, np.ndarray]  # (features, ratings) of one split's utterances


def select_and_score(
    train: Split, dev: Split, test: Split, attributes: list[str]
) -> dict[str, dict[str, float]]:
    """``deepemocluster.ridge.fit_ridge`` (alpha per attribute on Development), scored on Test:
    {attribute: {"ccc", "alpha", "dev_ccc"}}."""
    ridge = fit_ridge(*train, *dev)
    test_pred = ridge.predict(test[0])
    return {
        a: {
            "ccc": ccc(test[1][:, j], test_pred[:, j]),
            "alpha": float(ridge.alphas[j]),
            "dev_ccc": float(ridge.dev_ccc[j]),
        }
        for j, a in enumerate(attributes)
    }
