"""Segmentation of long recordings with the real silero-vad model, on demo episodes written to
disk whose speech spans are known."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from deepemocluster.config import load_config
from deepemocluster.config.schema import SegmentConfig
from deepemocluster.data.demo_voice import SAMPLE_RATE
from deepemocluster.data.manifest import read_unlabelled
from deepemocluster.data.segments import (
    NO_SPEECH,
    SegmentIndex,
    SegmentSettings,
    segment_file,
    segment_pool,
    speech_probabilities,
    write_segments_csv,
)
from deepemocluster.errors import AudioError, ConfigError
from tests.support.episodes import write_episode, write_music_and_noise

SETTINGS = SegmentSettings.from_config(OmegaConf.structured(SegmentConfig))
HAS_ONNX = importlib.util.find_spec("onnxruntime") is not None


def _turns(spans: list[tuple[int, float, float]]) -> list[tuple[float, float]]:
    """A turn runs from its first utterance's speech to its last's."""
    turns: dict[int, list[float]] = {}
    for turn, a, b in spans:
        turns.setdefault(turn, [a, b])[1] = b
    return [tuple(t) for t in turns.values()]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> tuple[Path, list[tuple[int, float, float]]]:
    path = tmp_path_factory.mktemp("episode") / "show" / "ep1.wav"
    return path, write_episode(path, 90.0)


# --- an episode with known speech --------------------------------------------------------------


def test_segments_follow_the_true_turns(episode) -> None:
    path, spans = episode
    turns = _turns(spans)
    assert any(b - a > SETTINGS.max_s for a, b in turns), "no turn long enough to be split"
    found = segment_file(path, SETTINGS)
    segments = found.segments
    assert len(segments) >= len(turns)
    assert segments == tuple(sorted(segments))
    for seg in segments:
        assert SETTINGS.min_s <= seg[1] - seg[0] <= SETTINGS.max_s, seg
        assert any(_overlap(seg, turn) > 0 for turn in turns), f"{seg} overlaps no speech"
    speech = sum(b - a for _, a, b in spans)
    covered = sum(_overlap(seg, (a, b)) for seg in segments for _, a, b in spans)
    assert covered / speech >= 0.9
    # every pause between turns is longer than pause_s: no segment runs from one turn into the next
    for first, second in zip(turns, turns[1:], strict=False):
        assert second[0] - first[1] > SETTINGS.pause_s
        assert not any(_overlap(seg, first) and _overlap(seg, second) for seg in segments)


def test_a_turn_is_split_at_its_quietest_point(episode) -> None:
    """A long turn's pieces meet where the audio is quieter than the turn's typical level."""
    path, spans = episode
    segments = segment_file(path, SETTINGS).segments
    audio, rate = sf.read(path)
    joins = [a for (_, b), (a, _) in zip(segments, segments[1:], strict=False) if a == b]
    assert joins, "no turn was split"

    def energy(t: float) -> float:
        mid = round(t * rate)
        return float(np.mean(audio[mid - 1200 : mid + 1200] ** 2))

    for t in joins:
        segment = next(s for s in segments if s[0] == t)
        typical = np.median([energy(x) for x in np.arange(segment[0] + 0.2, segment[1], 0.2)])
        assert energy(t) < typical


def test_the_result_does_not_depend_on_the_block_size(episode) -> None:
    """The detector carries its state from block to block: small blocks give one pass's numbers."""
    path, _ = episode
    backend = "onnx" if HAS_ONNX else "jit"
    whole, energy, n = speech_probabilities(path, backend)
    small, small_energy, n_small = speech_probabilities(path, backend, block_windows=7)
    assert n == n_small and len(whole) == -(-n // 512)
    np.testing.assert_allclose(small, whole, atol=1e-5)
    np.testing.assert_allclose(small_energy, energy, rtol=1e-5)


@pytest.mark.skipif(not HAS_ONNX, reason="onnxruntime is not installed")
def test_jit_and_onnx_models_give_the_same_segments(episode) -> None:
    path, _ = episode
    jit = segment_file(path, SegmentSettings(**{**SETTINGS.__dict__, "backend": "jit"}))
    onnx = segment_file(path, SegmentSettings(**{**SETTINGS.__dict__, "backend": "onnx"}))
    assert jit == onnx


# --- the pool: modes, skips, bad files, the cache ----------------------------------------------


def test_pool_cuts_long_recordings_and_lists_files_without_speech(tmp_path, episode, caplog):
    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / "ep1.wav").symlink_to(episode[0])
    write_music_and_noise(folder / "jingle.wav", 30.0)
    sf.write(folder / "short.wav", np.sin(np.arange(4 * SAMPLE_RATE) / 9.0), SAMPLE_RATE)
    broken = folder / "broken.flac"
    write_episode(broken, 40.0, index=1)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    manifest = read_unlabelled([folder])
    index = SegmentIndex(tmp_path / "store", SETTINGS)

    with caplog.at_level(logging.WARNING):
        cut, skipped = segment_pool(manifest, "auto", index, workers=2)
    assert dict(skipped) == {
        str(broken.resolve()): "unreadable",
        str(folder / "jingle.wav"): NO_SPEECH,
    }
    assert str(broken.resolve()) in caplog.text and "lost sync" in caplog.text
    whole = [u for u in cut if u.start_s is None]
    assert [u.id for u in whole] == ["pool/short"]  # 4 s ≤ max_s: left whole under auto
    segments = [u for u in cut if u.start_s is not None]
    expected = segment_file(episode[0], SETTINGS).segments
    assert [(u.start_s, u.end_s) for u in segments] == list(expected)
    assert segments[0].id == f"pool/ep1@{expected[0][0]:.2f}-{expected[0][1]:.2f}"
    assert {u.split for u in segments} == {"Unlabelled"}

    never, none_skipped = segment_pool(manifest, "never", index)
    assert never == manifest and none_skipped == []
    always, always_skipped = segment_pool(manifest, "always", index)
    assert str(folder / "short.wav") in dict(always_skipped)  # a sine is no speech either
    assert len([u for u in always if u.start_s is not None]) == len(segments)


def test_a_truncated_file_is_an_error_naming_it(tmp_path) -> None:
    path = tmp_path / "cut.flac"
    write_episode(path, 30.0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AudioError, match="unreadable") as err:
        segment_file(path, SETTINGS)
    assert str(path) in str(err.value)


def test_a_second_run_reads_the_cached_segment_lists(tmp_path, episode) -> None:
    index = SegmentIndex(tmp_path / "store", SETTINGS)
    path = str(episode[0])
    first = index.get([path])[path]
    entries = list(index.dir.rglob("*.json"))
    assert len(entries) == 1
    # plant a different list: a second run that returns it has not run the detector again
    planted = {**json.loads(entries[0].read_text()), "segments": [[1.0, 4.0]]}
    entries[0].write_text(json.dumps(planted))
    assert SegmentIndex(tmp_path / "store", SETTINGS).get([path])[path].segments == ((1.0, 4.0),)
    # other settings are another cache
    other = SegmentIndex(tmp_path / "store", SegmentSettings(**{**SETTINGS.__dict__, "max_s": 8.0}))
    assert other.dir != index.dir
    assert all(b - a <= 8.0 for a, b in other.get([path])[path].segments)
    assert first.segments and first.speech_s > 0


def test_segments_csv_lists_every_segment(tmp_path, episode) -> None:
    cut, _ = segment_pool(
        read_unlabelled([episode[0].parent]), "auto", SegmentIndex(tmp_path, SETTINGS)
    )
    assert write_segments_csv(tmp_path / "segments.csv", cut) == len(cut)
    with (tmp_path / "segments.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [u.id for u in cut]
    assert [(float(r["start_s"]), float(r["end_s"])) for r in rows] == [
        (u.start_s, u.end_s) for u in cut
    ]


# --- the schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.segment=sometimes", "data.segment"),
        ("segment.backend=tflite", "segment.backend"),
        ("segment.threshold=1.5", "segment.threshold"),
        ("segment.min_s=0", "segment.min_s"),
        ("segment.max_s=5.0", "segment.max_s"),
    ],
)
def test_bad_segment_options_are_refused_naming_the_key(override, key) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=["data.root=/tmp/x", override])
