"""The per-recording analysis: segments grouped into recordings, dwell times, the shuffled
baseline, and the tables, figures and report sections it writes."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from deepemocluster.analysis.recordings import (
    Recording,
    analyse_recordings,
    segmented_recordings,
    shuffled_dwell_means,
)
from deepemocluster.data.manifest import Utterance
from deepemocluster.data.segments import segment_utterance


def _recording(clusters: list[int], turn_s: float = 5.0, pause_s: float = 1.0) -> Recording:
    starts = np.arange(len(clusters)) * (turn_s + pause_s)
    return Recording("r", starts, starts + turn_s, np.array(clusters))


def test_dwells_are_runs_of_one_cluster_timed_across_their_pauses():
    r = _recording([2, 2, 2, 0, 1, 1])
    assert r.dwells() == [(2, 0, 3), (0, 3, 4), (1, 4, 6)]
    # three 5 s turns with two 1 s pauses between them: 17 s; one turn: 5 s; two: 11 s
    assert r.dwell_seconds().tolist() == [17.0, 5.0, 11.0]
    assert r.dwell_seconds(np.array([0, 1, 0, 1, 0, 1])).tolist() == [5.0] * 6


def test_segments_are_grouped_by_recording_in_time_order():
    show = Utterance("show/ep1", "/data/show/ep1.wav", "Unlabelled")
    other = Utterance("show/ep2", "/data/show/ep2.wav", "Unlabelled")
    whole = Utterance("Audios/a", "/data/a.wav", "Train", arousal=3.0)
    utts = [
        segment_utterance(show, 20.0, 25.0),
        whole,
        segment_utterance(other, 3.0, 9.0),
        segment_utterance(show, 3.0, 8.5),
    ]
    found = segmented_recordings(utts, np.array([1, 3, 2, 0]))
    assert [r.name for r in found] == ["show/ep1", "show/ep2"]
    assert found[0].starts.tolist() == [3.0, 20.0] and found[0].ends.tolist() == [8.5, 25.0]
    assert found[0].clusters.tolist() == [0, 1] and found[1].clusters.tolist() == [2]
    assert segmented_recordings([whole], np.array([3])) == []


def test_shuffled_baseline_tells_persistent_clusters_from_random_ones():
    blocks = [_recording([0] * 10 + [1] * 10)]  # two long stays
    alternating = [_recording([0, 1] * 10)]  # a change at every turn
    observed_blocks = blocks[0].dwell_seconds().mean()
    shuffled = shuffled_dwell_means(blocks, 200)
    assert observed_blocks > np.percentile(shuffled, 97.5)
    assert alternating[0].dwell_seconds().mean() < np.percentile(
        shuffled_dwell_means(alternating, 200), 2.5
    )
    one_cluster = [_recording([4] * 6)]  # nothing to shuffle
    assert shuffled_dwell_means(one_cluster, 20).tolist() == [35.0] * 20


def test_analysis_files_and_sections(tmp_path, assert_png):
    show = Utterance("show/ep1", "/data/show/ep1.wav", "Unlabelled")
    clusters = [0, 0, 0, 2, 2, 1, 1, 1, 0, 0]
    utts = [segment_utterance(show, 6.0 * i, 6.0 * i + 5.0) for i in range(len(clusters))]
    utts.append(Utterance("Audios/a", "/data/a.wav", "Train", arousal=3.0))
    result = analyse_recordings(utts, np.array([*clusters, 3]), 4, tmp_path, permutations=50)
    s = result.summary
    assert (s["n_recordings"], s["n_segments"], s["n_dwells"]) == (1, 10, 4)
    # dwells: 3 turns (17 s), 2 (11 s), 3 (17 s), 2 (11 s)
    assert s["dwell_mean_s"] == pytest.approx(14.0) and s["dwell_max_s"] == 17.0
    assert s["dwell_mean_s_shuffled_low"] <= s["dwell_mean_s_shuffled"]
    assert [x.title for x in result.sections] == [
        "Clusters along each recording",
        "Time in each cluster per recording",
        "Dwell times",
    ]
    with (tmp_path / "recordings.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert row["recording"] == "show/ep1" and (row["segments"], row["switches"]) == ("10", "3")
    assert [float(row[f"cluster_{c}_s"]) for c in (0, 1, 2)] == [25.0, 15.0, 10.0]
    assert "cluster_3_s" not in row  # only clusters that occur in a recording
    with (tmp_path / "dwell_times.csv").open() as f:
        dwells = list(csv.DictReader(f))
    assert [(d["cluster"], d["segments"], float(d["seconds"])) for d in dwells] == [
        ("0", "3", 17.0),
        ("2", "2", 11.0),
        ("1", "3", 17.0),
        ("0", "2", 11.0),
    ]
    for name in ("recording_timelines.png", "dwell_times.png"):
        assert_png(tmp_path / name)
    whole_files_only = analyse_recordings(utts[-1:], np.array([3]), 4, tmp_path, 50)
    assert whole_files_only is None
