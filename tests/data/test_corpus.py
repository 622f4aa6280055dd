"""load_corpus from a config: skips, skip ratio, unlabelled folders, hidden labels, and long
recordings in the unlabelled pool (their segments become utterances; files without speech and
broken files are listed; the rest of the pool is used)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from deepemocluster.config import load_config
from deepemocluster.config.schema import DemoConfig, SegmentConfig
from deepemocluster.data.corpus import beyond_label_fraction, hide_labels, load_corpus
from deepemocluster.data.demo_episodes import EpisodeSpec, music, render_episode
from deepemocluster.data.demo_plan import plan_corpus
from deepemocluster.data.demo_voice import SAMPLE_RATE
from deepemocluster.data.manifest import UNLABELLED_SPLIT, Utterance
from deepemocluster.data.segments import NO_SPEECH, SegmentSettings, segment_file
from deepemocluster.errors import TooManyBadFilesError


def corpus_cfg(root, store, *extra: str):
    return load_config(
        None,
        [
            "data.format=msp_podcast",
            f"data.root={root}",
            f"features.store={store}",
            "features.workers=1",
            "features.n_mels=16",
            *extra,
        ],
    )


def test_load_corpus_skips_and_lists_bad_files(make_msp_corpus, tmp_path):
    root = make_msp_corpus()  # 6 Train, 2 Development, 2 Test1
    bad = root / "Audios" / "utt007.wav"  # a Development file
    bad.write_bytes(b"")
    cfg = corpus_cfg(root, tmp_path / "features")  # 1 of 10 = 10 %: at the default limit
    corpus = load_corpus(cfg)
    assert corpus.skipped == [(str(bad), "empty_file")]
    assert len(corpus.manifest) == len(corpus.packed) == 9
    assert "utt007" not in [u.id for u in corpus.manifest]
    assert len(corpus.rows("Train")) == 6 and len(corpus.rows("Development")) == 1
    train = corpus.rows("Train")
    frames = np.concatenate([corpus.packed.utterance(i) for i in train]).astype(np.float64)
    np.testing.assert_allclose(corpus.mean, frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(corpus.std, frames.std(0), rtol=1e-4, atol=1e-5)
    ratings = corpus.ratings(train, ["arousal", "valence"])
    assert ratings.shape == (6, 2)
    assert ratings[1].tolist() == [corpus.manifest[1].arousal, corpus.manifest[1].valence]
    # a second load reuses everything and sees the same data
    assert load_corpus(cfg).fingerprint == corpus.fingerprint


def test_too_many_bad_files_fail_the_run(make_msp_corpus, tmp_path):
    root = make_msp_corpus()
    for name in ("utt001.wav", "utt008.wav"):
        (root / "Audios" / name).write_bytes(b"RIFF")  # 2 of 10 = 20 %
    with pytest.raises(TooManyBadFilesError, match=r"2 of 10") as err:
        load_corpus(corpus_cfg(root, tmp_path / "features"))
    assert "max_skip_ratio" in str(err.value)
    corpus = load_corpus(corpus_cfg(root, tmp_path / "features", "data.max_skip_ratio=0.25"))
    assert sorted(reason for _, reason in corpus.skipped) == ["unreadable", "unreadable"]
    assert len(corpus.manifest) == 8


def test_load_corpus_with_unlabelled_folders(make_msp_corpus, tmp_path, write_audio):
    root = make_msp_corpus()
    for i in range(3):
        write_audio(tmp_path / "extra" / f"u{i}.flac", 0.2, sr=22050, freq=500.0 + 50 * i)
    (tmp_path / "extra" / "readme.txt").write_text("ignored")
    corpus = load_corpus(
        corpus_cfg(root, tmp_path / "features", f"data.unlabelled=[{tmp_path / 'extra'}]")
    )
    assert len(corpus.rows(UNLABELLED_SPLIT)) == 3
    assert len(corpus.manifest) == len(corpus.packed) == 13
    unlabelled = corpus.rows(UNLABELLED_SPLIT)
    # statistics come from Train only
    train = np.concatenate([corpus.packed.utterance(i) for i in corpus.rows("Train")])
    np.testing.assert_allclose(corpus.mean, train.mean(0), rtol=1e-5, atol=1e-5)
    assert all(not corpus.manifest[i].labelled for i in unlabelled)


def test_label_fraction_hides_train_labels_deterministically(make_msp_corpus, tmp_path):
    root = make_msp_corpus()
    store = tmp_path / "features"
    a = load_corpus(corpus_cfg(root, store, "data.label_fraction=0.5", "train.seed=3"))
    b = load_corpus(corpus_cfg(root, store, "data.label_fraction=0.5", "train.seed=3"))
    assert len(a.rows("Train", labelled=True)) == 3
    assert len(a.rows(UNLABELLED_SPLIT)) == 3
    assert len(a.rows("Development")) == 2 and len(a.rows("Test1")) == 2
    assert [u.id for u in a.manifest if u.labelled] == [u.id for u in b.manifest if u.labelled]
    np.testing.assert_array_equal(a.mean, b.mean)


def _fake_manifest(n_train: int) -> tuple[Utterance, ...]:
    train = [
        Utterance(f"t{i}", f"/x/t{i}.wav", "Train", 4.0, 4.0, 4.0, "N", f"s{i % 5}", "Male")
        for i in range(n_train)
    ]
    dev = [Utterance(f"d{i}", f"/x/d{i}.wav", "Development", 3.0, 3.0, 3.0) for i in range(10)]
    unlabelled = [Utterance(f"u{i}", f"/x/u{i}.wav", UNLABELLED_SPLIT) for i in range(10)]
    return tuple(train + dev + unlabelled)


@pytest.mark.parametrize("fraction, kept", [(0.3, 30), (0.05, 5), (0.001, 1), (1.0, 100)])
def test_hide_labels_keeps_the_requested_fraction(fraction, kept):
    manifest = _fake_manifest(100)
    out = hide_labels(manifest, beyond_label_fraction(manifest, fraction, "Train", seed=0))
    assert len(out) == len(manifest)
    assert sum(u.split == "Train" and u.labelled for u in out) == kept
    assert sum(u.split == UNLABELLED_SPLIT for u in out) == 10 + 100 - kept
    assert out[100:110] == manifest[100:110]  # Development untouched
    for before, after in zip(manifest, out, strict=True):
        assert (before.id, before.path, before.speaker) == (after.id, after.path, after.speaker)
        if before.split == "Train" and after.split == UNLABELLED_SPLIT:
            assert after.arousal == before.arousal  # kept for analysis, unused in training


def test_hide_labels_is_deterministic_per_seed():
    manifest = _fake_manifest(50)

    def kept(seed):
        out = hide_labels(manifest, beyond_label_fraction(manifest, 0.2, "Train", seed))
        return [u.id for u in out if u.split == "Train"]

    assert kept(7) == kept(7)
    assert len({tuple(kept(s)) for s in range(5)}) > 1


# --- long recordings in the unlabelled pool ----------------------------------------------------

SETTINGS = SegmentSettings.from_config(OmegaConf.structured(SegmentConfig))


def _write_episode(path, seconds: float) -> None:
    plan = plan_corpus(DemoConfig(n_train=2, n_dev=0, n_test=0, n_unlabelled=4, n_speakers=3))
    speakers = tuple(sorted({u.speaker for u in plan if u.split is None}, key=lambda s: s.spk_id))
    samples, _ = render_episode(EpisodeSpec(0, path.name, speakers, seconds, 1000, (1.5, 4.5)), 0)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")


def test_segments_of_a_long_unlabelled_recording_are_utterances(
    make_msp_corpus, tmp_path, write_audio
):
    root = make_msp_corpus()  # 10 labelled files
    pool = tmp_path / "podcasts"
    pool.mkdir()
    _write_episode(pool / "show.wav", 60.0)
    write_audio(pool / "clip.wav", 0.5, freq=300.0)  # short: stays one utterance
    rng = np.random.default_rng(1)
    sf.write(pool / "jingle.wav", 0.3 * music(20 * SAMPLE_RATE, rng), SAMPLE_RATE)
    broken = pool / "broken.flac"
    _write_episode(broken, 30.0)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    args = ["data.format=msp_podcast", f"data.root={root}", f"data.unlabelled=[{pool}]"]
    args += [f"features.store={tmp_path / 'features'}", "features.n_mels=16", "features.workers=2"]
    args += ["data.max_skip_ratio=0.2"]  # 2 of 14 files give no segment

    corpus = load_corpus(load_config(overrides=args))

    expected = segment_file(pool / "show.wav", SETTINGS).segments
    unlabelled = [corpus.manifest[i] for i in corpus.rows(UNLABELLED_SPLIT)]
    segments = [u for u in unlabelled if u.start_s is not None]
    assert [(u.start_s, u.end_s) for u in segments] == list(expected) and len(expected) >= 4
    assert [u.id for u in segments] == [f"podcasts/show@{a:.2f}-{b:.2f}" for a, b in expected]
    assert [u.id for u in unlabelled if u.start_s is None] == ["podcasts/clip"]
    assert sorted(corpus.skipped) == [
        (str(broken), "unreadable"),
        (str(pool / "jingle.wav"), NO_SPEECH),
    ]
    assert len(corpus.manifest) == len(corpus.packed) == 10 + 1 + len(expected)
    # each segment's features cover its span (hop 256), and differ from segment to segment
    rows = {u.id: i for i, u in enumerate(corpus.manifest)}
    for u in segments:
        frames = corpus.packed.utterance(rows[u.id])
        assert frames.shape[0] == 1 + round((u.end_s - u.start_s) * SAMPLE_RATE) // 256
    first, second = (np.asarray(corpus.packed.utterance(rows[u.id])) for u in segments[:2])
    assert not np.allclose(first.mean(0), second.mean(0))

    # a second load reads the cached segment lists and entries: the same data
    assert load_corpus(load_config(overrides=args)).fingerprint == corpus.fingerprint
    # never: the episode is one utterance again
    whole = load_corpus(load_config(overrides=[*args, "data.segment=never"]))
    assert "podcasts/show" in {u.id for u in whole.manifest}
    assert not any(u.start_s is not None for u in whole.manifest)
