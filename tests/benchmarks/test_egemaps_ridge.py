"""benchmarks/egemaps_ridge.py: opensmile's eGeMAPSv02 functionals of real demo audio, their cache
next to the feature store, and the ridge on them (the quality benchmark's eGeMAPS anchor).
opensmile comes with the ``test`` extra (through ``egemaps``), so nothing here is skipped."""

from __future__ import annotations

import ast
import configparser
import sys
from pathlib import Path

import numpy as np
import opensmile
import pytest

from deepemocluster.data.audio import AudioSpan
from deepemocluster.data.corpus import load_corpus
from deepemocluster.statistics_ridge.ridge import ALPHAS
from tests.support.bench import load_benchmark

egemaps_ridge = load_benchmark("egemaps_ridge")
pooled_ridge = load_benchmark("pooled_ridge")
quality = load_benchmark("quality")


@pytest.fixture
def tiny_corpus(tiny_cfg):
    cfg = tiny_cfg()
    return load_corpus(cfg), cfg


def _spans(corpus, n: int) -> list[AudioSpan]:
    return [corpus.manifest[r].span for r in corpus.rows("Train", labelled=True)[:n]]


def test_functionals_are_88_named_finite_numbers_per_utterance(tiny_corpus, tmp_path):
    corpus, _ = tiny_corpus
    cache = egemaps_ridge.EgemapsCache(tmp_path)
    x = cache.functionals(_spans(corpus, 8))
    assert x.shape == (8, 88) and np.isfinite(x).all()
    assert len(set(cache.names)) == 88
    assert {"F0semitoneFrom27.5Hz_sma3nz_amean", "loudness_sma3_amean"} <= set(cache.names)
    # the utterances differ, so their functionals do (every column constant would be a bug)
    assert (x.std(axis=0) > 0).sum() > 80
    assert cache.settings["opensmile"] == opensmile.__version__
    assert cache.dir.parent == tmp_path / "egemaps"


def test_the_cache_returns_the_same_values_without_recomputing(tiny_corpus, tmp_path):
    corpus, _ = tiny_corpus
    spans = _spans(corpus, 4)
    first = egemaps_ridge.EgemapsCache(tmp_path)
    x = first.functionals(spans)
    assert first.computed == 4
    entries = sorted((first.dir / "entries").rglob("*"))
    files = [p for p in entries if p.is_file()]
    assert len(files) == 4 and not [p for p in entries if p.name.endswith(".tmp")]
    mtimes = [p.stat().st_mtime_ns for p in files]

    again = egemaps_ridge.EgemapsCache(tmp_path)
    y = again.functionals(spans)
    assert again.computed == 0
    assert np.array_equal(x, y)
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_a_span_of_a_file_is_an_entry_of_its_own(tiny_corpus, tmp_path):
    corpus, _ = tiny_corpus
    path = _spans(corpus, 1)[0].path
    cache = egemaps_ridge.EgemapsCache(tmp_path)
    whole, part = cache.functionals([AudioSpan(path), AudioSpan(path, 0.0, 1.0)])
    assert cache.computed == 2
    assert not np.array_equal(whole, part)
    assert np.array_equal(cache.compute(AudioSpan(path, 0.0, 1.0)), part)


def test_the_egemaps_ridge_carries_arousal_on_the_tiny_demo_corpus(tiny_corpus):
    """Loudness and pitch follow arousal in the demo voice: with every Train label (48 utterances)
    the eGeMAPS ridge reaches a Test CCC above 0.6 on arousal (0.76 when written)."""
    corpus, cfg = tiny_corpus
    scores = pooled_ridge.ridge_scores(corpus, cfg, egemaps_ridge.corpus_egemaps)
    assert scores["arousal"]["ccc"] > 0.6
    assert all(scores[a]["alpha"] in ALPHAS for a in ("arousal", "valence", "dominance"))
    # computed once, next to the run's feature store
    assert list(Path(cfg.features.store).glob("egemaps/*/settings.json"))


def test_without_opensmile_the_anchor_is_skipped_with_its_reason(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile raises ImportError
    reason = egemaps_ridge.missing()
    assert reason is not None and "opensmile is not installed" in reason
    assert "non-commercial" in reason
    kept, skipped = quality.available(["ridge", "ridge_egemaps", "clustering"])
    assert kept == ["ridge", "clustering"] and skipped == {"ridge_egemaps": reason}
    assert "ridge_egemaps: skipped" in capsys.readouterr().err


def test_the_ridge_reads_the_coefficients_of_variation_on_a_signed_log_scale(tiny_corpus, tmp_path):
    corpus, _ = tiny_corpus
    cache = egemaps_ridge.EgemapsCache(tmp_path)
    x = cache.functionals(_spans(corpus, 6))
    z = egemaps_ridge.ridge_inputs(x, cache.names)
    compressed = np.array([n.endswith("stddevNorm") for n in cache.names])
    assert compressed.sum() == 30
    assert np.array_equal(z[:, ~compressed], x[:, ~compressed])
    assert np.allclose(
        np.expm1(np.abs(z[:, compressed])) * np.sign(z[:, compressed]), x[:, compressed]
    )
    assert (x[:, compressed] < 0).any()  # real demo audio has negative ones (mean below zero)


def test_opensmile_is_no_dependency_of_the_model():
    """audEERING's research licence is non-commercial: nothing under deepemocluster/ imports
    opensmile, and it is an optional extra, never in install_requires."""
    root = Path(__file__).resolve().parents[2]
    importers = []
    for path in (root / "deepemocluster").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] == "opensmile" for n in names):
                importers.append(path)
    assert importers == []
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    assert "opensmile" not in setup["options"]["install_requires"]
    assert setup["options.extras_require"]["egemaps"].strip() == "opensmile>=2.5"
