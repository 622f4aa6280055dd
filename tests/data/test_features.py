"""The on-disk feature store: parallel extraction, reuse, invalidation, bad files, kill/resume,
packing and normalisation statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import deepemocluster
from deepemocluster.config import load_config
from deepemocluster.data.audio import AudioSpan
from deepemocluster.data.features import FeatureSettings, FeatureStore, entry_key
from tests.support.memory_probe import mapped_rss_kib

SETTINGS = FeatureSettings(
    kind="log_mel",
    sample_rate=16000,
    n_mels=24,
    n_fft=512,
    hop_length=256,
    fmin=0.0,
    fmax=None,
    log_offset=1e-6,
)


@pytest.fixture
def good_files(write_audio):
    """Six short, different files of mixed rates/formats/lengths."""
    specs = [
        ("a.wav", 0.20, 16000),
        ("b.flac", 0.31, 22050),
        ("c.wav", 0.12, 8000),
        ("sub/d.wav", 0.40, 48000),
        ("e.ogg", 0.25, 16000),
        ("f.wav", 0.05, 16000),
    ]
    return [
        str(write_audio(f"audio/{name}", sec, sr=sr, freq=180.0 + 90 * i))
        for i, (name, sec, sr) in enumerate(specs)
    ]


def entries(store: FeatureStore) -> list[Path]:
    return sorted((store.dir / "entries").rglob("*.npy"))


def assert_same_entries(a: FeatureStore, b: FeatureStore, keys) -> None:
    for key in keys:
        np.testing.assert_array_equal(a.load(key), b.load(key))


def test_entries_hold_the_features_of_each_file(tmp_path, good_files):
    store = FeatureStore(tmp_path / "store", SETTINGS)
    result = store.extract(good_files, workers=1)
    assert result.skipped == []
    assert set(result.keys) == set(good_files)
    assert len(entries(store)) == len(good_files)
    for path, key in result.keys.items():
        assert key == entry_key(path)
        expected = SETTINGS.compute(path)
        got = store.load(key)
        assert got.dtype == np.float32 and got.shape[1] == SETTINGS.n_mels
        np.testing.assert_array_equal(got, expected)
    settings = json.loads((store.dir / "settings.json").read_text())
    assert settings == asdict(SETTINGS)


@pytest.mark.slow  # two worker threads over a real corpus
def test_one_and_two_workers_give_identical_entries(tmp_path, good_files):
    empty = tmp_path / "audio" / "empty.wav"
    empty.touch()
    (tmp_path / "audio" / "dir.wav").mkdir()
    bad = [str(empty), str(tmp_path / "audio" / "dir.wav")]
    paths = good_files[:3] + bad + good_files[3:]
    one = FeatureStore(tmp_path / "one", SETTINGS)
    two = FeatureStore(tmp_path / "two", SETTINGS)
    r1 = one.extract(paths, workers=1)
    r2 = two.extract(paths, workers=2)  # 8 jobs ≥ 2 × workers: a real process pool
    assert r1.keys == r2.keys
    assert set(r1.keys) == set(good_files)
    # reasons come back across the process boundary
    assert (
        sorted(r1.skipped)
        == sorted(r2.skipped)
        == sorted(zip(bad, ["empty_file", "not_a_file"], strict=True))
    )
    assert [p.relative_to(one.dir) for p in entries(one)] == [
        p.relative_to(two.dir) for p in entries(two)
    ]
    assert_same_entries(one, two, r1.keys.values())


def test_second_pass_reuses_entries(tmp_path, good_files):
    store = FeatureStore(tmp_path / "store", SETTINGS)
    first = store.extract(good_files, workers=1)
    mtimes = {p: p.stat().st_mtime_ns for p in entries(store)}
    # Plant a recognisable value in one entry: a recompute would overwrite it.
    planted_key = first.keys[good_files[0]]
    shape = store.load(planted_key).shape
    np.save(store.entry_path(planted_key), np.full(shape, 42.0, dtype=np.float32))
    mtimes[store.entry_path(planted_key)] = store.entry_path(planted_key).stat().st_mtime_ns
    start = time.perf_counter()
    second = store.extract(good_files, workers=2)
    elapsed = time.perf_counter() - start
    assert second.keys == first.keys and second.skipped == []
    assert {p: p.stat().st_mtime_ns for p in entries(store)} == mtimes
    assert (store.load(planted_key) == 42.0).all()
    assert elapsed < 1.0  # nothing decoded, no worker pool started


def test_a_segment_is_an_entry_of_its_own_keyed_by_its_span(tmp_path, write_audio):
    t = np.arange(6 * 16000) / 16000
    path = str(write_audio("audio/long.wav", data=0.5 * np.sin(2 * np.pi * (200 + 100 * t) * t)))
    spans = [AudioSpan(path, 1.0, 2.5), AudioSpan(path, 2.5, 5.75), AudioSpan(path)]
    store = FeatureStore(tmp_path / "store", SETTINGS)
    result = store.extract([*spans, AudioSpan(path, 7.0, 9.0)], workers=2)
    assert len(set(result.keys.values())) == 3 == len(result.keys)
    assert result.keys[AudioSpan(path)] == entry_key(path)  # a whole file keeps its old key
    for span, seconds in zip(spans, (1.5, 3.25, 6.0), strict=True):
        feats = store.load(result.keys[span])
        assert feats.shape[0] == 1 + round(seconds * 16000) // 256
        np.testing.assert_array_equal(feats, SETTINGS.compute(path, span.start_s, span.end_s))
    # the segments differ: the rising tone sits higher in the later one
    first, second = (store.load(result.keys[s]).mean(axis=0) for s in spans[:2])
    assert np.argmax(first) < np.argmax(second)
    # a span past the end of the file is skipped, named with its span
    assert result.skipped == [(f"{path}@7.00-9.00", "too_short")]
    # the same spans again: nothing new
    assert store.extract(spans).keys == {s: result.keys[s] for s in spans}
    assert len(entries(store)) == 3


def test_changed_audio_file_gets_a_new_entry(tmp_path, write_audio):
    path = write_audio("audio/x.wav", 0.2, freq=300.0)
    store = FeatureStore(tmp_path / "store", SETTINGS)
    old_key = store.extract([str(path)]).keys[str(path)]
    old = np.array(store.load(old_key))
    # Same length (same size), different content and a later mtime.
    write_audio("audio/x.wav", 0.2, freq=2500.0)
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 2_000_000_000))
    new_key = store.extract([str(path)]).keys[str(path)]
    assert new_key != old_key
    assert store.load(new_key).shape == old.shape
    assert not np.allclose(store.load(new_key), old)
    np.testing.assert_array_equal(store.load(new_key), SETTINGS.compute(path))
    # Different length: different size, different key, different number of frames.
    write_audio("audio/x.wav", 0.5, freq=2500.0)
    third_key = store.extract([str(path)]).keys[str(path)]
    assert third_key not in (old_key, new_key)
    assert store.load(third_key).shape[0] > old.shape[0]
    assert len(entries(store)) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"n_mels": 16},
        {"kind": "mel"},
        {"hop_length": 128},
        {"fmax": 4000.0},
        {"log_offset": 1e-3},
    ],
)
def test_changed_settings_use_another_folder(tmp_path, good_files, change):
    other = replace(SETTINGS, **change)
    assert other.key != SETTINGS.key
    base = FeatureStore(tmp_path / "store", SETTINGS)
    changed = FeatureStore(tmp_path / "store", other)
    assert changed.dir != base.dir and changed.dir.parent == base.dir.parent
    keys = base.extract(good_files[:2]).keys
    assert changed.extract(good_files[:2]).keys == keys  # same files, same file keys...
    for path, key in keys.items():  # ...but separate entries with the new settings' numbers
        new, old = np.asarray(changed.load(key)), np.asarray(base.load(key))
        np.testing.assert_array_equal(new, other.compute(path))
        assert new.shape != old.shape or not np.allclose(new, old)


def test_settings_from_config_match_the_features_section():
    cfg = load_config(None, ["data.root=/tmp/x", "features.n_mels=24", "features.kind=mel"])
    settings = FeatureSettings.from_config(cfg.features)
    assert settings == replace(SETTINGS, kind="mel")
    assert settings.key == replace(SETTINGS, kind="mel").key
    assert len(settings.key) == 16


def test_bad_files_are_skipped_with_reasons_never_raised(tmp_path, write_audio, good_files, tone):
    bad = {}
    empty = tmp_path / "audio" / "empty.wav"
    empty.touch()
    bad[str(empty)] = "empty_file"
    bad[str(tmp_path / "audio" / "missing.wav")] = "missing"
    (tmp_path / "audio" / "dir.wav").mkdir()
    bad[str(tmp_path / "audio" / "dir.wav")] = "not_a_file"
    bad[str(write_audio("audio/tiny.wav", 0.01))] = "too_short"  # 160 samples < n_fft
    bad[str(write_audio("audio/zeros.wav", data=np.zeros(4000)))] = "silent"
    x = tone(0.2).astype(np.float32)
    x[7] = np.nan
    bad[str(write_audio("audio/nan.wav", data=x, subtype="FLOAT"))] = "non_finite"
    junk = tmp_path / "audio" / "junk.mp3"
    junk.write_bytes(b"\x00\x01garbage" * 50)
    bad[str(junk)] = "unreadable"
    loop = tmp_path / "audio" / "loop.wav"
    loop.symlink_to(loop)
    bad[str(loop)] = "not_a_file"

    names = list(bad)
    paths = [p for pair in zip(good_files, names[:6], strict=True) for p in pair] + names[6:]
    store = FeatureStore(tmp_path / "store", SETTINGS)
    result = store.extract(paths, workers=1)  # workers=2 is covered by the slow test above
    assert dict(result.skipped) == bad
    assert len(result.skipped) == len(bad)
    assert set(result.keys) == set(good_files)
    assert len(entries(store)) == len(good_files)


def test_leftover_temp_files_do_not_break_anything(tmp_path, good_files):
    store = FeatureStore(tmp_path / "store", SETTINGS)
    keys = [entry_key(p) for p in good_files]
    for key in keys:  # half-written leftovers, from this pid and from a long-gone one
        target = store.entry_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        for pid in (os.getpid(), 999999):
            target.with_name(f".{target.name}.{pid}.tmp").write_bytes(b"\x93NUMPY\x01\x00trunc")
    (store.dir / "packed" / ".leftover.npy.1.tmp").write_bytes(b"junk")
    result = store.extract(good_files, workers=1)
    assert result.skipped == []
    assert len(entries(store)) == len(good_files)
    for path, key in result.keys.items():
        np.testing.assert_array_equal(store.load(key), SETTINGS.compute(path))
    packed = store.pack(keys)
    assert len(packed) == len(keys)


_KILLABLE = textwrap.dedent(
    """
    import json, sys, time
    from deepemocluster.data.features import FeatureSettings, FeatureStore

    class Throttled(FeatureSettings):
        # Same fields, so the same settings key and folder as the plain settings; the pause only
        # gives the parent time to kill this process in the middle of the pass.
        def compute(self, path, start_s=None, end_s=None):
            time.sleep(0.02)
            return super().compute(path, start_s, end_s)

    root, settings, listing = sys.argv[1:]
    store = FeatureStore(root, Throttled(**json.loads(settings)))
    store.extract(open(listing).read().split("\\n"), workers=1)
    """
)


@pytest.mark.slow  # a fresh interpreter decodes 60 files: ~5 s
def test_killed_extraction_resumes_cleanly(tmp_path, write_audio):
    paths = [
        str(write_audio(f"audio/{i:02d}.wav", 0.1 + 0.01 * (i % 7), freq=150.0 + 20 * i))
        for i in range(60)
    ]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths))
    store = FeatureStore(tmp_path / "store", SETTINGS)
    env = {**os.environ, "PYTHONPATH": str(Path(deepemocluster.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(store.dir.parent), json.dumps(asdict(SETTINGS))]
        + [str(listing)],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(entries(store)) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, f"extraction ended before the kill: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    survivors = entries(store)
    assert 5 <= len(survivors) < len(paths)
    by_key = {entry_key(p): p for p in paths}
    for entry in survivors:  # no half-written file is visible under an entry name
        data = np.load(entry)
        assert data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == SETTINGS.n_mels
        np.testing.assert_array_equal(data, SETTINGS.compute(by_key[entry.stem]))

    resumed = store.extract(paths, workers=1)
    assert resumed.skipped == [] and len(resumed.keys) == len(paths)
    assert len(entries(store)) == len(paths)
    clean = FeatureStore(tmp_path / "clean", SETTINGS)
    assert clean.extract(paths, workers=1).keys == resumed.keys
    assert_same_entries(store, clean, resumed.keys.values())


def test_pack_is_memory_mapped_and_matches_entries(tmp_path, good_files):
    store = FeatureStore(tmp_path / "store", SETTINGS)
    result = store.extract(good_files)
    keys = [result.keys[p] for p in good_files]
    packed = store.pack(keys)
    assert isinstance(packed.frames, np.memmap)
    assert packed.frames.dtype == np.float32
    assert len(packed) == len(keys)
    lengths = [store.load(k).shape[0] for k in keys]
    assert packed.lengths.tolist() == lengths
    assert packed.offsets[0] == 0 and packed.offsets[-1] == packed.frames.shape[0] == sum(lengths)
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(packed.utterance(i), store.load(key))
    # Built once: a second call maps the same file instead of rewriting it.
    data_file = Path(packed.frames.filename)
    mtime = data_file.stat().st_mtime_ns
    again = store.pack(keys)
    assert again.name == packed.name and data_file.stat().st_mtime_ns == mtime
    # Another order is another pack, with the rows in that order.
    reordered = store.pack(keys[::-1])
    assert reordered.name != packed.name
    np.testing.assert_array_equal(reordered.utterance(0), store.load(keys[-1]))


def test_normalisation_is_mean_and_std_of_the_train_frames(tmp_path, good_files):
    store = FeatureStore(tmp_path / "store", SETTINGS)
    keys = [store.extract(good_files).keys[p] for p in good_files]
    packed = store.pack(keys)
    train = [0, 2, 3, 5]
    mean, std = store.normalisation(packed, train)
    frames = np.concatenate([store.load(keys[i]) for i in train]).astype(np.float64)
    assert mean.shape == std.shape == (SETTINGS.n_mels,)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-4, atol=1e-5)
    # Cached per (pack, rows), and different rows give different statistics.
    cached = list((store.dir / "packed").glob("stats-*.npz"))
    assert len(cached) == 1
    np.testing.assert_array_equal(store.normalisation(packed, train)[0], mean)
    other_mean, _ = store.normalisation(packed, [1, 4])
    assert not np.allclose(other_mean, mean)
    assert len(list((store.dir / "packed").glob("stats-*.npz"))) == 2
    assert mapped_rss_kib(packed.frames.filename) == 0  # read like batches, not through the map


def test_normalisation_std_is_floored_for_constant_bins(tmp_path, write_audio):
    path = write_audio("audio/t.wav", 0.3, freq=1000.0)
    store = FeatureStore(tmp_path / "store", replace(SETTINGS, kind="mel", fmin=7000.0))
    key = store.extract([str(path)]).keys[str(path)]
    _, std = store.normalisation(store.pack([key]), [0])
    assert (std > 0).all() and np.isfinite(std).all()
