"""Prediction timelines: which files are cut, how a file's segment rows make its whole-file row,
and that the rows do not depend on how segments are batched."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config.schema import SegmentConfig
from deepemocluster.data.segments import NO_SPEECH, SegmentSettings, segment_file
from deepemocluster.errors import ConfigError
from deepemocluster.serving import figures
from deepemocluster.serving.api import Model
from deepemocluster.serving.timeline import WHOLE_FILE, check_mode, plan_file, summarise

AVD = ["arousal", "valence", "dominance"]
SETTINGS = SegmentSettings.from_config(OmegaConf.structured(SegmentConfig))


def _row(seconds: float, ratings: tuple[float, float, float], cluster, distance=0.5, error=""):
    return {"duration_s": seconds, **dict(zip(AVD, ratings, strict=True))} | {
        "cluster": cluster,
        "cluster_distance": distance,
        "error": error,
    }


def test_whole_file_values_weigh_segments_by_duration():
    rows = [
        _row(2.0, (1.0, 2.0, 3.0), 1, 0.2),
        _row(6.0, (5.0, 6.0, 7.0), 0, 0.6),
        _row(4.0, (3.0, 3.0, 3.0), 1, 0.8),
        _row(9.0, (7.0, 7.0, 7.0), 2, 0.1, error="unreadable"),  # left out
    ]
    whole = summarise(rows, AVD)
    # arousal: (2·1 + 6·5 + 4·3) / 12
    assert whole["arousal"] == pytest.approx(44 / 12)
    assert whole["valence"] == pytest.approx((4 + 36 + 12) / 12)
    # cluster 1 holds 6 s, cluster 0 holds 6 s: a tie goes to the earlier segment's cluster
    assert whole["cluster"] == 1
    assert whole["cluster_distance"] == pytest.approx((2 * 0.2 + 4 * 0.8) / 6)
    rows[2]["duration_s"] = 3.0  # now cluster 0 holds the most time
    assert summarise(rows, AVD)["cluster"] == 0


def test_whole_file_of_failed_or_unclustered_segments():
    failed = [_row(3.0, (1, 1, 1), None, None, "unreadable")] * 2
    assert summarise(failed, AVD) == {"error": "unreadable"}
    plain = summarise([_row(3.0, (2, 4, 6), None, None), _row(1.0, (6, 4, 2), None, None)], AVD)
    assert plain == {"arousal": 3.0, "valence": 4.0, "dominance": 5.0}


def test_segment_mode_is_checked():
    assert check_mode("always") == "always"
    with pytest.raises(ConfigError, match="segment must be one of auto, always, never, got 'al'"):
        check_mode("al")


def test_which_files_are_cut(long_recordings, write_audio, tmp_path):
    episode = str(long_recordings.episode)
    short = str(write_audio("short.wav", seconds=4.0))
    expected = segment_file(episode, SETTINGS).segments
    assert plan_file(episode, "auto", SETTINGS).segments == expected
    assert plan_file(episode, "always", SETTINGS).segments == expected
    assert plan_file(episode, "never", SETTINGS).segments is None  # rated whole
    assert plan_file(short, "auto", SETTINGS).segments is None  # not longer than max_s
    cut = plan_file(short, "always", SETTINGS)  # a tone: nothing the detector calls speech
    assert (cut.error, cut.n_spans, cut.duration_s) == (NO_SPEECH, 0, pytest.approx(4.0))
    music = plan_file(str(long_recordings.music), "auto", SETTINGS)
    assert (music.error, music.n_spans) == (NO_SPEECH, 0)
    gone = plan_file(str(tmp_path / "gone.wav"), "auto", SETTINGS)
    assert (gone.error, gone.n_spans) == ("not_a_file", 0)
    assert gone.rows(AVD) == [
        {c: None for c in gone.rows(AVD)[0]}
        | {"path": str(tmp_path / "gone.wav"), "segment": WHOLE_FILE, "error": "not_a_file"}
    ]


@pytest.mark.slow
def test_rows_do_not_depend_on_the_batch_size(trained_run, long_recordings, tmp_path):
    paths = [
        long_recordings.episode,
        tmp_path / "gone.wav",
        long_recordings.music,
        trained_run.wavs[0],
        long_recordings.episode,
    ]
    model = Model.from_checkpoint(Checkpoint.load(trained_run.checkpoint))
    pairs = list(model.rows(paths, batch_files=2))
    n = len(segment_file(long_recordings.episode, SETTINGS).segments)
    assert len(pairs) == 2 * (n + 1) + 3
    assert [r["path"] for r in pairs] == [
        str(p) for p in paths for _ in range(n + 1 if p == long_recordings.episode else 1)
    ]
    for batch in (3, 64):  # batches that end inside a file, and one that holds all
        rows = list(model.rows(paths, batch_files=batch))
        assert [r["segment"] for r in rows] == [r["segment"] for r in pairs]
        for got, expected in zip(rows, pairs, strict=True):
            numbers = [k for k, v in expected.items() if isinstance(v, float)]
            assert [got[k] for k in numbers] == pytest.approx(
                [expected[k] for k in numbers], abs=1e-5
            )
            assert (got["cluster"], got["error"]) == (expected["cluster"], expected["error"])
    assert np.isfinite([r["arousal"] for r in pairs if not r["error"]]).all()


def test_timeline_picture_of_a_model_without_clusters(tmp_path, assert_png):
    starts = np.array([3.0, 12.0, 30.0, 41.0])
    ratings = {a: np.array([2.0, 4.5, 6.0, 3.0]) + i for i, a in enumerate(AVD)}
    path = figures.timeline(
        "show.wav", starts, starts + 8.0, ratings, None, 60.0, tmp_path / "show.png"
    )
    image = assert_png(path)
    assert image.shape[1::-1] == figures.TIMELINE_PIXELS
