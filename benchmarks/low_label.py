"""Does clustering help when labels are scarce? One label fraction of the label-efficiency study
(docs/studies.md): `model.aux_head=cluster` vs `none` on the demo corpus, several seeds each.

    python benchmarks/low_label.py [--quick] [--fraction 0.1] [--seeds 0 1 2] [--out FILE] [key=value ...]

A thin call of ``python -m deepemocluster.study`` in a fresh runs folder: prints the Test1 CCC of
both settings and the gain paired by seed (mean and 95 % interval), and writes them with the
study's summary and the machine to JSON. Extra ``key=value`` arguments go to the training config
(e.g. ``train.epochs=4`` for a quick look); ``--quick`` is one seed of a 1-epoch run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import RESULTS_DIR, load_average, machine_info, write_results

from deepemocluster.study.label_efficiency import readable_table
from deepemocluster.study.report import markdown
from deepemocluster.study.runner import run_study
from deepemocluster.study.spec import StudySpec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "low_label.json")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seeds = args.seeds[:1] if args.quick else args.seeds
    overrides = [*(["train.epochs=1"] if args.quick else []), *args.overrides]
    spec = StudySpec(
        name="low_label",
        params={
            "data.label_fraction": [args.fraction],
            "model.aux_head": ["cluster", "none"],
            "train.seed": seeds,
        },
    )
    load, began = load_average(), time.perf_counter()
    with tempfile.TemporaryDirectory() as runs_dir:
        config = str(ROOT / "configs" / "default.yaml")
        summary = run_study(spec, config, [f"tracking.runs_dir={runs_dir}", *overrides])
        report = Path(runs_dir) / spec.name / "report"
        table = pd.read_csv(report / "label_efficiency.csv")
        trials = pd.read_csv(report / "trials.csv")
    metrics = list(dict.fromkeys(table["metric"]))
    print(f"label fraction {args.fraction}, seeds {seeds}: Test1 CCC, mean [95 % interval]")
    print(markdown(readable_table(table, metrics)))
    write_results(
        {
            "benchmark": "low_label",
            "mode": "quick" if args.quick else "full",
            "label_fraction": args.fraction,
            "seeds": seeds,
            "overrides": overrides,
            "seconds": time.perf_counter() - began,
            "machine": machine_info(load_before=load),
            "summary": summary,
            "label_efficiency": _records(table),
            "trials": _records(trials),
        },
        args.out,
    )


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows for JSON, with null where a figure does not exist (an interval of one seed)."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


if __name__ == "__main__":
    main()
