"""Does clustering help when labels are scarce? `model.aux_head=cluster` vs `none` on the demo corpus
with a fraction of Train labelled (the rest joins the unlabelled pool), several seeds each.

    python benchmarks/low_label.py [--fraction 0.1] [--seeds 0 1 2] [--out benchmarks/results/low_label.json]

Prints Test1 CCC mean ± std per attribute for both settings and writes every run's numbers to JSON.
Extra ``key=value`` arguments are passed to the config (e.g. ``train.epochs=4`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from deepemocluster.config import load_config
from deepemocluster.training.run import run

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("test/ccc_arousal", "test/ccc_valence", "test/ccc_dominance", "test/ccc_mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "low_label.json"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for seed in args.seeds:
            for enabled in (True, False):
                cfg = load_config(
                    ROOT / "configs" / "default.yaml",
                    [
                        f"data.label_fraction={args.fraction}",
                        f"model.aux_head={'cluster' if enabled else 'none'}",
                        f"train.seed={seed}",
                        f"tracking.runs_dir={runs_dir}",
                        f"tracking.run_name=lowlabel-{'cluster' if enabled else 'supervised'}-{seed}",
                        *args.overrides,
                    ],
                )
                start = time.perf_counter()
                test = run(cfg, "low_label")
                seconds = time.perf_counter() - start
                runs.append({"cluster": enabled, "seed": seed, "seconds": seconds, **test})
                write(args, runs)  # after every run: a long experiment keeps what it finished
    print(f"label fraction {args.fraction}, seeds {args.seeds}: Test1 CCC mean ± std")
    print(f"{'setting':<12}" + "".join(f"{k.split('_')[-1]:>18}" for k in KEYS))
    for name, stats in summarise(runs).items():
        cells = "".join(f"{stats[k]['mean']:>11.3f} ± {stats[k]['std']:.3f}" for k in KEYS)
        print(f"{name:<12}{cells}")
    print(f"wrote {args.out}")


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for enabled, name in ((True, "cluster"), (False, "supervised")):
        rows = [r for r in runs if r["cluster"] == enabled]
        if rows:
            summary[name] = {
                k: {
                    "mean": float(np.mean([r[k] for r in rows])),
                    "std": float(np.std([r[k] for r in rows])),
                }
                for k in KEYS
            }
    return summary


def write(args: argparse.Namespace, runs: list[dict]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "label_fraction": args.fraction,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "summary": summarise(runs),
        "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
