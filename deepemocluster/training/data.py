"""What a run trains and evaluates on, assembled from a loaded corpus and checked against the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from deepemocluster.data.corpus import Corpus
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.labels import LabelScaler
from deepemocluster.data.manifest import UNLABELLED_SPLIT
from deepemocluster.data.pairs import NO_LABEL, pair_labels
from deepemocluster.errors import ConfigError, ManifestError
from deepemocluster.statistics_ridge.fit import (
    StatisticsRidge,
    fit_statistics_ridge,
    statistics_ratings,
)


@dataclass
class TrainingData:
    """``train`` holds the labelled Train utterances first (z-normalised targets), then the
    unlabelled ones (NaN targets). ``pair_labels`` (Siamese head only) says which ``train``
    utterances make a "same" pair (−1: none)."""

    corpus: Corpus
    train: ChunkDataset
    n_labelled: int
    dev: ChunkDataset
    test: ChunkDataset
    scaler: LabelScaler
    pair_labels: np.ndarray | None = None
    # the ridge on the labelled utterances' chunk statistics, where the run uses it
    # (model.ridge_readout or train.teacher_weight > 0; training/statistics_ridge.py)
    statistics_ridge: StatisticsRidge | None = None
    # train.teacher_weight > 0: that ridge's z-scale ratings of every ``train`` utterance
    teacher_ratings: torch.Tensor | None = None
    # model.ridge_readout: the ridge's z-scale ratings of every ``train`` utterance that the
    # residual outputs learn on top of: out of fold for the labelled ones
    readout_ratings: torch.Tensor | None = None

    @property
    def labelled_chunks(self) -> np.ndarray:
        return np.arange(self.n_labelled * self.train.n_chunks)

    @property
    def unlabelled_chunks(self) -> np.ndarray:
        return np.arange(self.n_labelled * self.train.n_chunks, self.train.n_total_chunks)

    def ratings(self, ds: ChunkDataset, attributes: list[str]) -> np.ndarray:
        """The 1–7 ratings of the utterances of ``ds`` (Development or Test)."""
        return self.corpus.ratings(ds.rows, attributes)


def build_data(corpus: Corpus, cfg: DictConfig) -> TrainingData:
    splits, attrs = cfg.data.splits, list(cfg.model.attributes)
    labelled = corpus.rows(splits.train, labelled=True)
    unlabelled = np.array(
        [i for i, u in enumerate(corpus.manifest) if u.split == UNLABELLED_SPLIT or not u.labelled],
        dtype=np.int64,
    )
    if len(labelled) == 0:
        raise ManifestError(f"no labelled utterance of split {splits.train!r} has usable audio")
    scaler = LabelScaler.fit(corpus.ratings(labelled, attrs))
    targets = np.concatenate(
        [
            scaler.normalise(corpus.ratings(labelled, attrs)),
            np.full((len(unlabelled), len(attrs)), np.nan),
        ]
    )

    def dataset(rows: np.ndarray, targets: np.ndarray | None = None) -> ChunkDataset:
        return ChunkDataset.for_rows(
            corpus.packed, rows, corpus.mean, corpus.std, cfg.chunking, targets
        )

    dev, test = corpus.rows(splits.dev, labelled=True), corpus.rows(splits.test, labelled=True)
    for name, rows in (("dev", dev), ("test", test)):
        if len(rows) < 2:
            raise ConfigError(
                f"data.splits.{name}: need ≥ 2 labelled utterances, found {len(rows)}"
            )
    longest = int(corpus.packed.lengths[labelled].max())
    if cfg.chunking.frames > longest:
        raise ConfigError(
            f"chunking.frames={cfg.chunking.frames} is longer than the longest labelled "
            f"{splits.train} utterance ({longest} frames): every chunk would be mostly padding"
        )
    if cfg.model.aux_head == "cluster":
        n_chunks = (len(labelled) + len(unlabelled)) * cfg.chunking.n_chunks
        if cfg.cluster.k > n_chunks:
            raise ConfigError(
                f"cluster.k={cfg.cluster.k} is larger than the {n_chunks} training chunks"
            )
    if cfg.train.teacher_weight < 0:
        raise ConfigError(f"train.teacher_weight must be ≥ 0, got {cfg.train.teacher_weight}")
    if cfg.train.teacher_weight > 0 and cfg.model.aux_head != "cluster":
        raise ConfigError(
            f"train.teacher_weight rates unlabelled chunks, which only model.aux_head=cluster "
            f"trains on (got {cfg.model.aux_head!r}); set train.teacher_weight=0"
        )
    train, dev_set = dataset(np.concatenate([labelled, unlabelled]), targets), dataset(dev)
    ridge = teacher = readout = None
    if cfg.model.ridge_readout or cfg.train.teacher_weight > 0:
        dev_targets = scaler.normalise(corpus.ratings(dev, attrs))
        ridge = fit_statistics_ridge(
            train, len(labelled), dev_set, dev_targets, out_of_fold=cfg.model.ridge_readout
        )
        unlabelled_ratings = statistics_ratings(train, ridge.ridge, first=len(labelled))
        if cfg.train.teacher_weight > 0:
            teacher = torch.cat([ridge.in_sample, unlabelled_ratings])
        if cfg.model.ridge_readout:
            readout = torch.cat([ridge.out_of_fold, unlabelled_ratings])
    return TrainingData(
        corpus,
        train,
        len(labelled),
        dev_set,
        dataset(test),
        scaler,
        train_pair_labels(corpus, labelled, len(unlabelled), cfg)
        if cfg.model.aux_head == "siamese"
        else None,
        ridge,
        teacher,
        readout,
    )


def utterance_pair_labels(corpus: Corpus, rows: np.ndarray, cfg: DictConfig) -> np.ndarray:
    """Which utterances ``rows`` make a "same" pair under ``siamese.pair_label`` (−1: none)."""
    s = cfg.siamese
    return pair_labels(
        [corpus.manifest[r] for r in rows], s.pair_label, s.bin_attribute, s.bin_edges
    )


def train_pair_labels(
    corpus: Corpus, labelled: np.ndarray, n_unlabelled: int, cfg: DictConfig
) -> np.ndarray:
    """Pair labels of the labelled Train utterances, −1 for the unlabelled ones after them."""
    labels = utterance_pair_labels(corpus, labelled, cfg)
    counts = np.bincount(labels[labels >= 0])
    if (counts > 0).sum() < 2 or counts.max() < 2:
        raise ConfigError(
            f"siamese.pair_label={cfg.siamese.pair_label}: the labelled Train utterances need ≥ 2 "
            f"groups and one with ≥ 2 utterances to form pairs, got sizes {counts[counts > 0]}"
        )
    return np.concatenate([labels, np.full(n_unlabelled, NO_LABEL, dtype=np.int64)])
