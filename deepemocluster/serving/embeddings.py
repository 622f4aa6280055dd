"""``Model.embed``'s answer: where each vector comes from, its cluster, and the vectors.

Rows follow the inputs as ``predict``'s do: a file that is not cut is one utterance (segment
``whole-file``), a cut one gives its segments (``0``, ``1``, …; no whole-file row, as a recording
has no single embedding); at ``level="chunk"`` each utterance gives one row per chunk, its times
in the file to one hop. An input or segment without features is one row with its ``error`` and
a NaN vector, so that rows and vectors stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepemocluster.clustering import utterance_clusters
from deepemocluster.serving.timeline import WHOLE_FILE, FileJob

LEVELS = ("chunk", "utterance")


@dataclass(frozen=True)
class Embeddings:
    """``rows``: path, segment, start_s, end_s, (``chunk``), cluster and cluster_distance (missing
    without a clustering), error; ``vectors``: (len(rows), d) float32, row i that of rows row i."""

    rows: pd.DataFrame
    vectors: np.ndarray


def embedding_rows(
    jobs: list[FileJob], done: list[dict], names: dict[str, str], level: str
) -> Embeddings:
    """The rows and vectors of ``jobs`` from ``done``, the result of each of their spans in order
    (``Model._embed``); ``names``: what a temporary file's rows call it."""
    width = next((r["vectors"].shape[1] for r in done if "vectors" in r), 0)
    rows, vectors = [], []
    results = iter(done)
    for job in jobs:
        path = names.get(job.path, job.path)
        if job.error:
            rows.append({"path": path, "segment": WHOLE_FILE, "error": job.error})
            vectors.append(np.full((1, width), np.nan, np.float32))
            continue
        for i in range(job.n_spans):
            result = next(results)
            cut = job.segments is not None
            where = {"path": path, "segment": str(i) if cut else WHOLE_FILE, "error": ""}
            if result["error"]:  # a whole file without features has no known end
                times = dict(zip(("start_s", "end_s"), job.segments[i], strict=True)) if cut else {}
                rows.append(where | times | {"error": result["error"]})
                vectors.append(np.full((1, width), np.nan, np.float32))
                continue
            start, end = job.segments[i] if cut else (0.0, result["duration_s"])
            where |= {"start_s": start, "end_s": end}
            if level == "chunk":
                rows += _chunk_rows(where, result)
                vectors.append(result["vectors"])
            else:
                rows.append(where | _vote(result))
                vectors.append(result["vectors"].mean(0, keepdims=True))
    columns = ["path", "segment", "start_s", "end_s"] + (["chunk"] if level == "chunk" else [])
    columns += ["cluster", "cluster_distance", "error"]
    types = {"start_s": "Float64", "end_s": "Float64", "chunk": "Int64", "cluster": "Int64"}
    types["cluster_distance"] = "Float64"
    frame = pd.DataFrame(rows, columns=columns).astype({c: types.get(c, object) for c in columns})
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, width), np.float32)
    return Embeddings(frame, stacked.astype(np.float32))


def _chunk_rows(where: dict, result: dict) -> list[dict]:
    """One row per chunk: its times in the file (within the span) and its cluster."""
    start, end = where["start_s"], where["end_s"]
    times = np.minimum(start + result["chunk_s"], end)
    rows = []
    for c, (a, b) in enumerate(times):
        row = where | {"chunk": c, "start_s": round(float(a), 3), "end_s": round(float(b), 3)}
        if result["clusters"] is not None:
            row |= {
                "cluster": int(result["clusters"][c]),
                "cluster_distance": float(result["distances"][c]),
            }
        rows.append(row)
    return rows


def _vote(result: dict) -> dict:
    """An utterance's cluster: the vote of its chunks, with their mean distance (as predict)."""
    if result["clusters"] is None:
        return {}
    cluster, distance = utterance_clusters(result["clusters"][None], result["distances"][None])
    return {"cluster": int(cluster[0]), "cluster_distance": float(distance[0])}
