"""A classical anchor of the quality benchmark: the project's ridge (``fit_ridge``, alpha per
attribute on Development) on opensmile's eGeMAPSv02 functionals, 88 per utterance, of the audio
the run's feature store decodes.

The 30 ``stddevNorm`` functionals are coefficients of variation (std / mean) and explode where a
descriptor's mean is near zero (MFCCs, H1-H2, HNR in dB: one Development utterance of the demo
corpus has -19,291 in ``mfcc3V_sma3nz_stddevNorm`` where 40 Train utterances span ±20). With few
labels the Train standardisation then puts such an utterance hundreds of standard deviations out
and the ridge's Development CCC stays near 0 at every alpha. They enter the ridge as
sign(x)·log(1 + |x|) (``ridge_inputs``); the other 58 as they are.

opensmile (PyPI ``opensmile``, the ``egemaps`` extra) is under audEERING's research licence:
non-commercial use only. It is a benchmark tool, never a dependency of the model: nothing under
``deepemocluster/`` imports it, and without it this anchor is skipped (``missing``).

The functionals are cached next to the run's feature store, one ``.npy`` per utterance::

    <features.store>/egemaps/<settings key>/settings.json       what the folder holds, column names
    <features.store>/egemaps/<settings key>/entries/ab/<key>.npy (88,) float64

The settings key covers the opensmile version, the feature set and level, the sample rate and
the decoding; an entry's key is the feature store's (``entry_key``: absolute path, size, mtime,
and the span of a segment of a long recording). Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deepemocluster.data.audio import AudioSpan, load_audio
from deepemocluster.data.corpus import Corpus
from deepemocluster.data.features import entry_key
from deepemocluster.runtime.files import write_atomic

SAMPLE_RATE = 16_000  # what eGeMAPS was defined at, and the demo corpus's rate
N_FUNCTIONALS = 88
STATISTICS = (
    "opensmile eGeMAPSv02 functionals (88 per utterance: F0, loudness, jitter, shimmer, HNR, "
    "formants, spectral slopes and alpha ratio, Hammarberg index, MFCC 1-4, voiced/unvoiced "
    "segment statistics) of the audio the feature store decodes (mono, 16 kHz, peak-normalised); "
    "the 30 stddevNorm (coefficient of variation) columns as sign(x) log(1 + |x|)"
)
SIGNED_LOG = "stddevNorm"  # the columns ``ridge_inputs`` compresses
LICENCE = "audEERING research licence (non-commercial): benchmark only"


def missing() -> str | None:
    """Why this anchor cannot run here (None: it can)."""
    try:
        import opensmile  # noqa: F401
    except ImportError:
        return (
            "opensmile is not installed, so the eGeMAPS anchor is skipped "
            f"(pip install -e '.[egemaps]'; {LICENCE})"
        )
    return None


class EgemapsCache:
    """eGeMAPSv02 functionals of audio files and spans, computed once and kept under ``root``;
    ``computed`` counts the entries this object computed (the others were read back)."""

    def __init__(self, root: str | Path) -> None:
        import opensmile

        self.smile = opensmile.Smile(
            opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals
        )
        self.names = list(self.smile.feature_names)
        if len(self.names) != N_FUNCTIONALS:
            raise RuntimeError(f"eGeMAPSv02 functionals: {len(self.names)} columns, expected 88")
        self.settings = {
            "opensmile": opensmile.__version__,
            "feature_set": "eGeMAPSv02",
            "feature_level": "Functionals",
            "sample_rate": SAMPLE_RATE,
            "audio": "deepemocluster.data.audio.load_audio: mono, peak-normalised",
        }
        key = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / "egemaps" / key
        meta = self.dir / "settings.json"
        if not meta.exists():
            write_atomic(meta, json.dumps({**self.settings, "names": self.names}, indent=2))
        self.computed = 0

    def entry_path(self, key: str) -> Path:
        return self.dir / "entries" / key[:2] / f"{key}.npy"

    def compute(self, span: AudioSpan) -> np.ndarray:
        """(88,) functionals of one file or span; raises AudioError like the feature store."""
        audio = load_audio(span.path, SAMPLE_RATE, 1, span.start_s, span.end_s)
        values = self.smile.process_signal(audio, SAMPLE_RATE).to_numpy(np.float64).ravel()
        if values.shape != (N_FUNCTIONALS,) or not np.isfinite(values).all():
            raise RuntimeError(f"{span}: eGeMAPS functionals not 88 finite numbers")
        return values

    def functionals(self, spans: Sequence[AudioSpan]) -> np.ndarray:
        """(len(spans), 88): read back where cached, else computed and written."""
        out = np.empty((len(spans), N_FUNCTIONALS))
        for i, span in enumerate(spans):
            path = self.entry_path(entry_key(span.path, span.start_s, span.end_s))
            if path.exists():
                out[i] = np.load(path)
                continue
            out[i] = values = self.compute(span)
            write_atomic(path, lambda f, v=values: np.save(f, v), point="egemaps_write")
            self.computed += 1
        return out


def ridge_inputs(functionals: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """What the ridge reads: the functionals, the ``stddevNorm`` columns as sign(x)·log(1 + |x|)
    (a fixed map per utterance, nothing fitted)."""
    x = np.array(functionals, dtype=np.float64)
    cols = [i for i, name in enumerate(names) if name.endswith(SIGNED_LOG)]
    x[:, cols] = np.sign(x[:, cols]) * np.log1p(np.abs(x[:, cols]))
    return x


def corpus_egemaps(corpus: Corpus, rows: np.ndarray, cfg: DictConfig) -> np.ndarray:
    """(len(rows), 88) ridge inputs of the corpus's utterances ``rows``: their functionals,
    cached next to the run's feature store (``features.store``), through ``ridge_inputs``."""
    cache = EgemapsCache(cfg.features.store)
    return ridge_inputs(cache.functionals([corpus.manifest[r].span for r in rows]), cache.names)
