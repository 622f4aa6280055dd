"""From the ``data``/``features`` config to a ready corpus: manifest, packed features, statistics.

This is the one place that decides which utterances a run uses: it reads the label sources, makes
the demo corpus when asked, cuts long unlabelled recordings into segments, extracts features
(skipping and listing bad files), enforces the skip ratio, and packs the usable utterances for
memory-mapped training.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deepemocluster.data.features import FeatureStore, PackedFeatures, feature_settings
from deepemocluster.data.manifest import (
    UNLABELLED_SPLIT,
    Manifest,
    check_audio_exists,
    combine,
    read_csv_manifest,
    read_msp_podcast,
    read_unlabelled,
)
from deepemocluster.data.segments import SegmentIndex, SegmentSettings, segment_pool
from deepemocluster.errors import ManifestError, TooManyBadFilesError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    """Usable utterances (row i of ``manifest`` is utterance i of ``packed``; a segment of a long
    recording is an utterance of its own) and their features. ``skipped``: (file, reason)."""

    manifest: Manifest
    packed: PackedFeatures
    mean: np.ndarray
    std: np.ndarray
    skipped: list[tuple[str, str]]

    @property
    def fingerprint(self) -> str:
        """Identifies the exact data a run saw (file identities, settings, utterance order)."""
        return hashlib.sha1(f"{self.packed.name}|{self.mean.tobytes().hex()}".encode()).hexdigest()[
            :16
        ]

    def rows(self, split: str, labelled: bool | None = None) -> np.ndarray:
        return np.array(
            [
                i
                for i, u in enumerate(self.manifest)
                if u.split == split and (labelled is None or u.labelled == labelled)
            ],
            dtype=np.int64,
        )

    def ratings(self, rows: np.ndarray, attributes: list[str]) -> np.ndarray:
        """(len(rows), len(attributes)) ratings on the 1–7 scale."""
        return np.array(
            [[getattr(self.manifest[r], a) for a in attributes] for r in rows], dtype=np.float64
        ).reshape(len(rows), len(attributes))


def read_manifest(data: DictConfig) -> Manifest:
    """All utterances the ``data`` config names (labelled corpus + unlabelled sources)."""
    root = Path(data.root)
    if data.format == "demo":
        from deepemocluster.data.demo import generate_demo_corpus

        generate_demo_corpus(root, data.demo)
        labelled = read_msp_podcast(root, allow_absolute_paths=data.allow_absolute_paths)
        sources = [root / "Unlabelled", *data.unlabelled]
    elif data.format == "msp_podcast":
        labelled = read_msp_podcast(root, allow_absolute_paths=data.allow_absolute_paths)
        sources = list(data.unlabelled)
    else:
        labelled = read_csv_manifest(data.manifest, allow_absolute_paths=data.allow_absolute_paths)
        sources = list(data.unlabelled)
    manifest = combine(labelled, read_unlabelled(sources))
    check_audio_exists(manifest)
    train = data.splits.train
    if not any(u.split == train and u.labelled for u in manifest):
        raise ManifestError(f"no labelled utterances in split {train!r} (data.splits.train)")
    return manifest


def hide_labels(manifest: Manifest, hidden: Iterable[int]) -> Manifest:
    """Move the utterances at positions ``hidden`` to the ``Unlabelled`` split. Their ratings
    stay on the record so analysis can still use them, but training only reads ratings of the
    Train split."""
    hidden = set(hidden)
    return tuple(
        replace(u, split=UNLABELLED_SPLIT) if i in hidden else u for i, u in enumerate(manifest)
    )


def beyond_label_fraction(
    manifest: Manifest, fraction: float, train_split: str, seed: int
) -> list[int]:
    """The labelled Train utterances left over when a random ``fraction`` of them (at least one)
    keeps its labels: the low-label experiment's ``data.label_fraction``."""
    if fraction >= 1.0:
        return []
    train = [i for i, u in enumerate(manifest) if u.split == train_split and u.labelled]
    rng = np.random.default_rng(seed)
    return rng.permutation(train)[max(1, round(fraction * len(train))) :].tolist()


def load_corpus(cfg: DictConfig, seed: int | None = None) -> Corpus:
    """Manifest → segments of long recordings → features (extracted once, cached) → packed
    store + Train statistics."""
    whole = read_manifest(cfg.data)
    index = SegmentIndex(cfg.features.store, SegmentSettings.from_config(cfg.segment))
    cut, no_segments = segment_pool(whole, cfg.data.segment, index, cfg.features.workers)
    manifest = hide_labels(
        cut,
        beyond_label_fraction(
            cut,
            cfg.data.label_fraction,
            cfg.data.splits.train,
            cfg.train.seed if seed is None else seed,
        ),
    )
    store = FeatureStore(cfg.features.store, feature_settings(cfg))
    extraction = store.extract([u.span for u in manifest], workers=cfg.features.workers)
    skipped = no_segments + extraction.skipped
    n_files = len({u.path for u in whole})
    ratio = len(skipped) / max(1, n_files)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if ratio > cfg.data.max_skip_ratio:
        raise TooManyBadFilesError(
            f"{len(skipped)} of {n_files} audio files unusable ({ratio:.1%} > "
            f"data.max_skip_ratio={cfg.data.max_skip_ratio}); first: {skipped[0]}",
            skipped,
        )
    usable = tuple(u for u in manifest if u.span in extraction.keys)
    packed = store.pack([extraction.keys[u.span] for u in usable])
    train_rows = [i for i, u in enumerate(usable) if u.split == cfg.data.splits.train]
    if not train_rows:
        raise ManifestError(f"no usable audio in split {cfg.data.splits.train!r}")
    mean, std = store.normalisation(packed, train_rows)
    return Corpus(usable, packed, mean, std, skipped)
