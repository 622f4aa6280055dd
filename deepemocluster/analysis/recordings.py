"""The per-recording part of the analysis: where each cluster occurs in the long recordings of
the analysed split (those cut into segments), and how long a recording stays in one cluster.

A *dwell* is a run of consecutive segments of one recording in the same cluster; its time runs
from the first segment's start to the last one's end (pauses between them included). The same
segments with their clusters shuffled within each recording give the baseline: dwells longer
than shuffled ones mean the clusters follow the flow of a recording (a speaker, a mood) rather
than changing from turn to turn at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepemocluster.analysis import plots
from deepemocluster.analysis.report import Section, Table
from deepemocluster.data.manifest import Utterance

MAX_STRIPS = 40  # recordings drawn in the strip figure (the tables list all)
RECORDING_METRICS = ("dwell_mean_s", "dwell_median_s", "dwell_mean_s_shuffled")  # logged


@dataclass(frozen=True)
class Recording:
    """One recording's segments in time order, with their clusters."""

    name: str  # the recording's file id (its segments' ids without the @span)
    starts: np.ndarray
    ends: np.ndarray
    clusters: np.ndarray

    def dwells(self, clusters: np.ndarray | None = None) -> list[tuple[int, int, int]]:
        """(cluster, first segment, last segment + 1) of each run of one cluster."""
        c = self.clusters if clusters is None else clusters
        edges = [0, *(np.flatnonzero(c[1:] != c[:-1]) + 1).tolist(), len(c)]
        return [(int(c[a]), a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def dwell_seconds(self, clusters: np.ndarray | None = None) -> np.ndarray:
        return np.array([self.ends[b - 1] - self.starts[a] for _, a, b in self.dwells(clusters)])


def segmented_recordings(utterances: Sequence[Utterance], clusters: np.ndarray) -> list[Recording]:
    """The recordings whose segments are among ``utterances``, by name; [] when none is."""
    found: dict[str, list[tuple[float, float, int]]] = {}
    for utt, cluster in zip(utterances, clusters, strict=True):
        if utt.start_s is not None:
            name = utt.id.rsplit("@", 1)[0]
            found.setdefault(name, []).append((utt.start_s, utt.end_s, int(cluster)))
    out = []
    for name in sorted(found):
        starts, ends, ids = map(np.array, zip(*sorted(found[name]), strict=True))
        out.append(Recording(name, starts.astype(float), ends.astype(float), ids.astype(int)))
    return out


def shuffled_dwell_means(
    recordings: list[Recording], permutations: int, seed: int = 0
) -> np.ndarray:
    """Mean dwell time for each of ``permutations`` shufflings of the clusters within each
    recording (segment times and each recording's cluster mix kept)."""
    rng = np.random.default_rng(seed)
    return np.array(
        [
            np.concatenate(
                [r.dwell_seconds(rng.permutation(r.clusters)) for r in recordings]
            ).mean()
            for _ in range(permutations)
        ]
    )


@dataclass(frozen=True)
class RecordingsAnalysis:
    summary: dict
    sections: list[Section]


def analyse_recordings(
    utterances: Sequence[Utterance], clusters: np.ndarray, k: int, out: Path, permutations: int
) -> RecordingsAnalysis | None:
    """Tables, figures, summary and report sections into ``out``; None without recordings."""
    recordings = segmented_recordings(utterances, clusters)
    if not recordings:
        return None
    dwell = np.concatenate([r.dwell_seconds() for r in recordings])
    shuffled = shuffled_dwell_means(recordings, permutations)
    summary = {
        "n_recordings": len(recordings),
        "n_segments": int(sum(len(r.clusters) for r in recordings)),
        "n_dwells": len(dwell),
        "dwell_mean_s": float(dwell.mean()),
        "dwell_median_s": float(np.median(dwell)),
        "dwell_p90_s": float(np.percentile(dwell, 90)),
        "dwell_max_s": float(dwell.max()),
        "dwell_mean_s_shuffled": float(shuffled.mean()),
        "dwell_mean_s_shuffled_low": float(np.percentile(shuffled, 2.5)),
        "dwell_mean_s_shuffled_high": float(np.percentile(shuffled, 97.5)),
        "n_permutations": permutations,
    }
    table = _time_per_cluster(recordings)
    table.write_csv(out / "recordings.csv")
    _dwell_table(recordings).write_csv(out / "dwell_times.csv")
    drawn = recordings[:MAX_STRIPS]
    strips = plots.recording_strips(
        [r.name for r in drawn],
        [(r.starts, r.ends, r.clusters) for r in drawn],
        k,
        out / "recording_timelines.png",
    )
    histogram = plots.dwell_histogram(
        dwell, summary["dwell_mean_s_shuffled"], out / "dwell_times.png"
    )
    shown = (
        "" if len(recordings) <= MAX_STRIPS else f" (the first {MAX_STRIPS} of {len(recordings)})"
    )
    sections = [
        Section(
            "Clusters along each recording",
            f"Each strip is one long recording of the split{shown}, cut into speaking turns; each "
            "block is a segment in its cluster's colour (and number), white is time without a "
            "segment (pauses, music, turns too short to keep). Long blocks of one colour: the "
            "recording stays in a cluster; a patchwork: it changes cluster from turn to turn.",
            image=strips,
        ),
        Section(
            "Time in each cluster per recording",
            "Seconds of each recording's segments in each cluster, its segment count and how "
            "often consecutive segments change cluster (recordings.csv).",
            table=table,
        ),
        Section(
            "Dwell times",
            "A dwell is a run of consecutive segments of a recording in the same cluster, timed "
            "from its first segment's start to its last one's end (dwell_times.csv). The "
            "baseline shuffles the clusters of each recording's segments: a mean dwell above "
            "the shuffled 97.5 % value means the clusters persist from turn to turn.",
            bullets=verdict(summary),
            image=histogram,
        ),
    ]
    return RecordingsAnalysis(summary, sections)


def verdict(summary: dict) -> list[str]:
    """The dwell-time numbers in words."""
    s = summary
    reading = (
        "clusters persist across consecutive turns"
        if s["dwell_mean_s"] > s["dwell_mean_s_shuffled_high"]
        else "no evidence that clusters persist beyond chance"
    )
    return [
        f"{s['n_recordings']} recordings, {s['n_segments']} segments, {s['n_dwells']} dwells.",
        f"Dwell time: mean {s['dwell_mean_s']:.1f} s, median {s['dwell_median_s']:.1f} s, "
        f"90 % under {s['dwell_p90_s']:.1f} s, longest {s['dwell_max_s']:.1f} s.",
        f"Shuffled clusters: mean {s['dwell_mean_s_shuffled']:.1f} s (95 % range "
        f"{s['dwell_mean_s_shuffled_low']:.1f}–{s['dwell_mean_s_shuffled_high']:.1f} s): "
        f"{reading}.",
    ]


def _time_per_cluster(recordings: list[Recording]) -> Table:
    used = sorted({int(c) for r in recordings for c in r.clusters})
    rows = []
    for r in recordings:
        seconds = r.ends - r.starts
        per_cluster = [round(float(seconds[r.clusters == c].sum()), 2) for c in used]
        switches = int(np.count_nonzero(r.clusters[1:] != r.clusters[:-1]))
        rows.append(
            [r.name, len(r.clusters), round(float(seconds.sum()), 2), switches, *per_cluster]
        )
    header = ["recording", "segments", "segment_s", "switches", *(f"cluster_{c}_s" for c in used)]
    return Table(header, rows)


def _dwell_table(recordings: list[Recording]) -> Table:
    rows = [
        [r.name, cluster, r.starts[a], r.ends[b - 1], round(r.ends[b - 1] - r.starts[a], 3), b - a]
        for r in recordings
        for cluster, a, b in r.dwells()
    ]
    return Table(["recording", "cluster", "start_s", "end_s", "seconds", "segments"], rows)
