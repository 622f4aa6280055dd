"""Epoch time against the number of torchrun ranks on one machine, at a fixed total thread budget.

Each setting trains ``configs/default.yaml`` on the demo corpus for a few epochs: 1 rank as
``python -m deepemocluster.train``, R ranks as ``torchrun --standalone --nproc_per_node=R``, each
rank with ``cores // R`` torch threads, so every setting uses the same cores. The epoch time is
the run's logged ``time/epoch_s`` (set-up, the final clustering and the report excluded),
averaged over all epochs but the first. The speed-up is against 1 rank in the same run. Test1
CCC is reported beside it: a different number of ranks is a different (per-rank BatchNorm)
trajectory, not the same run faster.

    python benchmarks/ddp_scaling.py [--quick] [--ranks 1 2] [--cores N] [--epochs E] [--out ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as bench
import numpy as np
from mlflow.tracking import MlflowClient

CONFIG = bench.ROOT / "configs" / "default.yaml"


def command(ranks: int, overrides: list[str]) -> list[str]:
    train = ["-m", "deepemocluster.train", "--config", str(CONFIG)]
    if ranks == 1:
        return [sys.executable, *train, *overrides]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    return [sys.executable, *launcher, *train, *overrides]


def data_overrides(workdir: Path) -> list[str]:
    return [f"data.root={workdir / 'demo'}", f"features.store={workdir / 'features'}"]


def prepare_data(workdir: Path, extra: list[str]) -> None:
    """The demo corpus and its features, made first so that no setting pays for them or waits
    for rank 0's (here, not by a training run: that would also train, cluster and report)."""
    from deepemocluster.config import load_config
    from deepemocluster.data.corpus import load_corpus

    load_corpus(load_config(str(CONFIG), [*data_overrides(workdir), *extra]))


def run_setting(ranks: int, cores: int, epochs: int, workdir: Path, extra: list[str]) -> dict:
    """One training run; its epoch times as MLflow logged them."""
    name = f"ranks-{ranks}"
    overrides = [
        *data_overrides(workdir),
        f"tracking.runs_dir={workdir / 'runs'}",
        f"tracking.run_name={name}",
        f"train.epochs={epochs}",
        f"train.threads={max(1, cores // ranks)}",
        *extra,
    ]
    began = time.perf_counter()
    proc = subprocess.run(command(ranks, overrides), capture_output=True, text=True, cwd=bench.ROOT)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    client = MlflowClient(f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")
    (found,) = client.search_runs(
        [client.get_experiment_by_name("deepemocluster").experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
    )
    history = client.get_metric_history(found.info.run_id, "time/epoch_s")
    epoch_s = [m.value for m in sorted(history, key=lambda m: m.step)]
    return {
        "ranks": ranks,
        "threads_per_rank": max(1, cores // ranks),
        "epoch_s": epoch_s,
        "mean_epoch_s": float(np.mean(epoch_s[1:] or epoch_s)),
        "test_ccc_mean": found.data.metrics["test/ccc_mean"],
        "wall_s": wall,
    }


def print_settings(result: dict) -> None:
    print(f"{result['cores']} cores ({result['machine']['processor']}), {result['epochs']} epochs")
    specs = (">6", ">9", "10.2f", ">10", "11.3f")
    print(bench.header(specs, ("ranks", "threads", "epoch s", "speed-up", "Test1 CCC")))
    for r in result["settings"]:
        speedup = None if r["speedup_vs_1_rank"] is None else f"{r['speedup_vs_1_rank']:.2f}x"
        values = (r["ranks"], r["threads_per_rank"], r["mean_epoch_s"], speedup)
        print(bench.row(specs, (*values, r["test_ccc_mean"])))


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(
        __doc__, bench.RESULTS_DIR / "ddp_scaling.json", "tiny corpus and encoder, seconds"
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--epochs", type=int, default=None, help="default 4 (quick: 2)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 4)
    extra = list(bench.TINY_RUN) if args.quick else []
    load_before = bench.load_average()
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as workdir:
        prepare_data(Path(workdir), extra)
        rows = [run_setting(r, args.cores, epochs, Path(workdir), extra) for r in args.ranks]
    base = next((r["mean_epoch_s"] for r in rows if r["ranks"] == 1), None)
    for r in rows:
        r["speedup_vs_1_rank"] = None if base is None else base / r["mean_epoch_s"]
    result = {
        "benchmark": "ddp_scaling",
        "mode": bench.mode(args.quick),
        "config": "configs/default.yaml",
        "overrides": extra,
        "cores": args.cores,
        "epochs": epochs,
        "settings": rows,
        "machine": bench.machine_info(("torch",), load_before),
    }
    return bench.finish(result, args.out, print_settings)


if __name__ == "__main__":
    sys.exit(main())
