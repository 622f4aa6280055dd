"""What a run trains and evaluates on, assembled from a loaded corpus and checked against the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from deepemocluster.data.corpus import Corpus
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.data.labels import LabelScaler
from deepemocluster.data.manifest import UNLABELLED_SPLIT
from deepemocluster.data.pairs import NO_LABEL, pair_labels
from deepemocluster.errors import ConfigError, ManifestError


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
    return TrainingData(
        corpus,
        dataset(np.concatenate([labelled, unlabelled]), targets),
        len(labelled),
        dataset(dev),
        dataset(test),
        scaler,
        train_pair_labels(corpus, labelled, len(unlabelled), cfg)
        if cfg.model.aux_head == "siamese"
        else None,
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
