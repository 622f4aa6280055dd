"""``python -m deepemocluster.predict --model RUN_ID|CHECKPOINT|MODEL.onnx PATH... --out preds.csv``.

The command line of the Python API (``api.py``): each row of ``Model.rows`` (per audio file, or
per speaking turn of a long recording and its ``whole-file`` row) is written to the CSV as soon
as it is ready, so thousands of files need no more memory than one batch; ``--timeline DIR``
draws each file's ratings over time. A file that cannot be used gets its reason in the ``error``
column and the others go on. The network runs in torch, or in onnxruntime from an exported file
(``--backend onnx``, the default for ``.onnx`` files); decoding, features and chunking are the
same code for both.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Iterable
from pathlib import Path

from deepemocluster.runtime.cli import exit_code
from deepemocluster.serving.api import BACKENDS, BATCH_FILES, load
from deepemocluster.serving.timeline import SEGMENT_MODES, WHOLE_FILE, TimelineWriter

log = logging.getLogger("deepemocluster")


def write_csv(rows: Iterable[dict], columns: list[str], out: Path) -> tuple[int, int]:
    """Stream rows to ``out`` (flushed per row); returns (files, files without a rating): the
    ``whole-file`` rows, one per file, and those of them with an error."""
    n = failed = 0
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
            f.flush()
            if row["segment"] == WHOLE_FILE:
                n, failed = n + 1, failed + bool(row["error"])
    return n, failed


def _cell(value: object) -> object:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="MLflow run id, checkpoint or .onnx file")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="onnx: a model from python -m deepemocluster.export, run by onnxruntime (CPU); "
        "default: onnx for .onnx files, else torch",
    )
    parser.add_argument("paths", nargs="+", help="audio files and/or folders (recursive)")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument(
        "--batch-files", type=int, default=BATCH_FILES, help="files or segments rated at a time"
    )
    parser.add_argument(
        "--segment",
        choices=SEGMENT_MODES,
        default="auto",
        help="cut recordings into speaking turns (one row each, then a whole-file row): auto = "
        "files longer than the model's segment.max_s",
    )
    parser.add_argument(
        "--timeline", type=Path, help="folder for one PNG per file: ratings and clusters over time"
    )
    parser.add_argument(
        "--tracking-uri", default="", help="default: MLFLOW_TRACKING_URI, else runs/mlflow.db"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def work() -> int:
        model = load(args.model, args.tracking_uri, args.backend)
        rows = model.rows(args.paths, args.batch_files, args.segment)
        if args.timeline:
            from deepemocluster.serving.figures import timeline  # matplotlib only when asked

            timelines = TimelineWriter(args.timeline, model.attributes, timeline)
            rows = timelines(rows)
        n, failed = write_csv(rows, model.columns, args.out)
        log.info("%d files, %d failed (see the error column): %s", n, failed, args.out)
        if args.timeline:
            log.info("%d timelines in %s", len(timelines.written), args.timeline)
        if n == failed:
            log.error("no file could be predicted")
            return 1
        return 0

    return exit_code(work, output=args.out)
