"""Prediction timelines: a long recording → one row per speaking turn, then a whole-file row.

``predict`` cuts a recording the way training cuts the unlabelled pool (``data/segments.py`` with
the model's ``segment`` settings): ``auto`` cuts files longer than ``segment.max_s``, ``always``
every file, ``never`` none. Each segment is rated as an utterance of its own; the file's rows are
its segments in time order (``segment`` = 0, 1, …), then one ``whole-file`` row: duration-weighted
means of the segment ratings, the cluster that holds the most segment time. A file that is not
cut gives its ``whole-file`` row only, as before segmentation existed. Files may be long, so
segments of several files share a rating batch, and a file's rows leave as soon as it is complete.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepemocluster.data.audio import AudioSpan, audio_seconds
from deepemocluster.data.segments import SegmentSettings, segment_file
from deepemocluster.errors import AudioError, ConfigError

SEGMENT_MODES = ("auto", "always", "never")
WHOLE_FILE = "whole-file"
SPAN_COLUMNS = ("segment", "start_s", "end_s", "duration_s")

# a batch of spans → one row each: duration_s, ratings, cluster, cluster_distance, error
Rate = Callable[[list[AudioSpan]], list[dict]]


def output_columns(attributes: list[str]) -> list[str]:
    """The prediction columns, in order (a superset of those before segmentation existed)."""
    return ["path", *SPAN_COLUMNS, *attributes, "cluster", "cluster_distance", "error"]


def output_types(attributes: list[str]) -> dict[str, str]:
    """Output column → MLflow type (the logged model's signature; the API's DataFrame dtypes)."""
    types = {"path": "string", "segment": "string", "cluster": "long", "error": "string"}
    return {c: types.get(c, "double") for c in output_columns(attributes)}


def check_mode(mode: str) -> str:
    if mode not in SEGMENT_MODES:
        raise ConfigError(f"segment must be one of {', '.join(SEGMENT_MODES)}, got {mode!r}")
    return mode


@dataclass
class FileJob:
    """One input file: its segments (None: rated whole), or why it gives no rating."""

    path: str
    segments: tuple[tuple[float, float], ...] | None = None
    duration_s: float | None = None  # of a cut file (a whole file's comes with its rating)
    error: str = ""
    rated: list[dict | None] = field(init=False)  # the rating of each span, once it is known

    def __post_init__(self) -> None:
        self.rated = [None] * self.n_spans

    @property
    def n_spans(self) -> int:
        if self.error:
            return 0
        return 1 if self.segments is None else len(self.segments)

    def span(self, i: int) -> AudioSpan:
        if self.segments is None:
            return AudioSpan(self.path)
        return AudioSpan(self.path, *self.segments[i])

    @property
    def complete(self) -> bool:
        return all(row is not None for row in self.rated)

    def rows(self, attributes: list[str]) -> list[dict]:
        """The output rows: each segment in time order, then the whole-file row."""
        base = dict.fromkeys(output_columns(attributes)) | {"path": self.path, "error": self.error}
        whole = {"start_s": 0.0, "end_s": self.duration_s, "duration_s": self.duration_s}
        if self.error:
            return [base | (whole if self.duration_s is not None else {}) | {"segment": WHOLE_FILE}]
        if self.segments is None:
            (row,) = self.rated
            span = {"start_s": 0.0, "end_s": row["duration_s"]} if not row["error"] else {}
            return [base | row | span | {"segment": WHOLE_FILE}]
        parts = [
            base
            | row
            | {"segment": str(i), "start_s": a, "end_s": b, "duration_s": round(b - a, 3)}
            for i, ((a, b), row) in enumerate(zip(self.segments, self.rated, strict=True))
        ]
        return [*parts, base | whole | summarise(parts, attributes) | {"segment": WHOLE_FILE}]


def plan_file(path: str, mode: str, settings: SegmentSettings) -> FileJob:
    """What to rate in ``path``: the whole file, or the segments the detector finds in it."""
    try:
        if mode == "never" or (mode == "auto" and audio_seconds(path) <= settings.max_s):
            return FileJob(path)
        found = segment_file(path, settings)
    except AudioError as e:
        return FileJob(path, error=e.reason)
    if found.reason:  # no speech, or none long enough
        return FileJob(path, (), found.duration_s, error=found.reason)
    return FileJob(path, found.segments, found.duration_s)


def summarise(rows: list[dict], attributes: list[str]) -> dict:
    """The whole-file values of a file's segment rows: duration-weighted means of the ratings;
    the cluster holding the most segment time (ties: the earliest segment's) and the
    duration-weighted mean distance of its segments. Failed segments are left out."""
    good = [r for r in rows if not r["error"]]
    if not good:
        return {"error": rows[0]["error"]}
    weights = np.array([r["duration_s"] for r in good], dtype=float)
    out = {a: float(np.average([r[a] for r in good], weights=weights)) for a in attributes}
    if good[0]["cluster"] is None:  # a model without clusters
        return out
    clusters = np.array([r["cluster"] for r in good])
    time_in = {c: weights[clusters == c].sum() for c in dict.fromkeys(clusters.tolist())}
    winner = max(time_in, key=time_in.get)  # dict order is time order: ties go to the earliest
    mine = clusters == winner
    distances = np.array([r["cluster_distance"] for r in good])
    distance = np.average(distances[mine], weights=weights[mine])
    return out | {"cluster": int(winner), "cluster_distance": float(distance)}


def rows_in_order(
    jobs: Iterable[FileJob], rate: Rate, attributes: list[str], batch: int
) -> Iterator[dict]:
    """Every job's rows, in job order, rating ``batch`` spans (of one or more files) at a time."""
    pending: deque[FileJob] = deque()
    queue: list[tuple[FileJob, int]] = []

    def finished() -> Iterator[dict]:
        while pending and pending[0].complete:
            yield from pending.popleft().rows(attributes)

    def flush() -> None:
        rated = rate([job.span(i) for job, i in queue])
        for (job, i), row in zip(queue, rated, strict=True):
            job.rated[i] = row
        queue.clear()

    for job in jobs:
        pending.append(job)
        for i in range(job.n_spans):
            queue.append((job, i))
            if len(queue) == batch:
                flush()
                yield from finished()
        yield from finished()
    if queue:
        flush()
    yield from finished()


class TimelineWriter:
    """Passes rows through and draws one PNG per file (``figures.timeline``) into ``folder`` when
    its whole-file row goes by; a file without ratings gets none."""

    def __init__(self, folder: Path, attributes: list[str], draw: Callable[..., Path]) -> None:
        self.folder, self.attributes, self.draw = Path(folder), attributes, draw
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._names: set[str] = set()

    def __call__(self, rows: Iterable[dict]) -> Iterator[dict]:
        segments: list[dict] = []
        for row in rows:
            yield row
            if row["segment"] != WHOLE_FILE:
                segments.append(row)
                continue
            rated = [r for r in (segments or [row]) if not r["error"]]
            if rated:
                self.written.append(self._draw(row, rated))
            segments = []

    def _draw(self, whole: dict, rows: list[dict]) -> Path:
        name = self._name(Path(whole["path"]).stem)
        return self.draw(
            title=Path(whole["path"]).name,
            starts=np.array([r["start_s"] for r in rows]),
            ends=np.array([r["end_s"] for r in rows]),
            ratings={a: np.array([r[a] for r in rows]) for a in self.attributes},
            clusters=None if rows[0]["cluster"] is None else np.array([r["cluster"] for r in rows]),
            duration_s=whole["end_s"],
            path=self.folder / f"{name}.png",
        )

    def _name(self, stem: str) -> str:
        """The file's stem, numbered when another file of this run had it already."""
        name, n = stem, 1
        while name in self._names:
            n += 1
            name = f"{stem}_{n}"
        self._names.add(name)
        return name
