"""Scale: one epoch's time and peak memory against corpus size, on synthetic feature stores.

For each size a packed store (float32, 64 mels) is written straight to disk, then a fresh process
runs one real ``Trainer.run_epoch`` over it (joint clustering, a small encoder; the training pass
cut to ``--steps`` batches and extrapolated) and reports its seconds by part and its peak memory
beside the N x d embedding matrix k-means needs. A read probe reads the largest store through
``os.preadv`` and through the memory map. Verdicts: peak RSS grows < 20 %, time per utterance
within +-20 %, k-means <= 10 % of the epoch. Methods: benchmarks/README.md.

    python benchmarks/scale.py [--quick] [--sizes 10000 30000 100000] [--steps S]
                               [--workdir /tmp] [--plot docs/img/perf_scale.png] [--out ...]
    python benchmarks/scale.py --replot benchmarks/results/scale.json [--plot PNG]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The package first, as under `python -m deepemocluster.train`: it sets the OpenMP wait policy,
# which torch's and faiss's runtimes read when they load.
# isort: off
import deepemocluster  # noqa: F401

# isort: on
import _common as bench
import numpy as np
import torch
from _encoder import bench_config
from _epoch import profile_epoch, profiled_trainer
from _synthetic import open_synthetic_corpus, synthetic_store_bytes, write_synthetic_store
from train_throughput import TOY_ENCODER

from deepemocluster.data.features import ArrayRows
from deepemocluster.training.data import build_data
from deepemocluster.training.trainer import Trainer

RESULTS = bench.RESULTS_DIR / "scale.json"
PLOT = bench.ROOT / "docs" / "img" / "perf_scale.png"
MAX_RSS_GROWTH, MAX_TIME_DEVIATION, MAX_KMEANS_SHARE = 0.20, 0.20, 0.10


@dataclass(frozen=True)
class Setup:
    sizes: tuple[int, ...]
    n_mels: int
    overrides: tuple[str, ...]
    steps: int  # training batches run per epoch (the rest extrapolated)


SMALL_ENCODER = (
    "model.channels=[4,4,8,8,8,8,8]",
    "chunking.n_chunks=5",
    "cluster.k=10",
    "train.batch_utterances=32",
)
FULL = Setup((10_000, 30_000, 100_000), 64, SMALL_ENCODER, 20)
QUICK_SETUP = Setup((200, 600), 32, TOY_ENCODER, 3)


def epoch_child(folder: Path, n: int, setup: Setup) -> dict:
    """One profiled epoch over the store in ``folder``, with this process's memory readings."""
    rss_start = bench.rss_now_mib()
    cfg = bench_config([*setup.overrides, f"train.max_steps_per_pass={setup.steps or 0}"])
    threads = bench.library_threads(cfg)
    data = build_data(open_synthetic_corpus(folder, n, setup.n_mels), cfg)
    trainer, timings = profiled_trainer(cfg, data, torch.device("cpu"))
    _warm_up(trainer)
    rss_ready = bench.rss_now_mib()
    with bench.RssSampler() as sampler:
        profile = profile_epoch(trainer, timings)
    embedding_mib = data.train.n_total_chunks * cfg.model.head_dim * 4 / 2**20
    return {
        "utterances": n,
        "training_chunks": data.train.n_total_chunks,
        "dev_chunks": data.dev.n_total_chunks,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        **profile,
        "memory_mib": {
            **sampler.memory_mib(),
            "start": rss_start,
            "ready": rss_ready,
            "embedding_matrix": embedding_mib,
        },
    }


def _warm_up(trainer: Trainer) -> None:
    """One forward/backward outside the timed phases (first-call allocations, oneDNN primitives)."""
    train = trainer.data.train
    x, _ = train.chunk_batch(np.arange(min(64, train.n_total_chunks)))
    trainer.model.train()
    aux, named = trainer.model(x)
    (aux.sum() + named["plain"].sum()).backward()
    trainer.model.zero_grad(set_to_none=True)


def read_child(folder: Path, n: int, setup: Setup, method: str) -> dict:
    """Read every training chunk once, in batches: ``preadv`` is ``chunk_batch`` as the library
    reads; ``mmap`` is the same dataset slicing the memory map as if it were an in-RAM array."""
    cfg = bench_config(setup.overrides)
    corpus = open_synthetic_corpus(folder, n, setup.n_mels)
    ds = build_data(corpus, cfg).train
    if method == "mmap":
        ds.source = ArrayRows(corpus.packed.frames)
    batch = cfg.train.eval_batch_chunks
    with bench.RssSampler() as sampler:
        began = time.perf_counter()
        for start in range(0, ds.n_total_chunks, batch):
            ds.chunk_batch(np.arange(start, min(start + batch, ds.n_total_chunks)))
        seconds = time.perf_counter() - began
    return {
        "method": method,
        "chunks": ds.n_total_chunks,
        "seconds": seconds,
        "chunks_per_s": ds.n_total_chunks / seconds,
        **{f"{k}_mib": v for k, v in sampler.memory_mib().items()},
    }


def measure_size(n: int, setup: Setup, workdir: Path, flags: list[str], read_probe: bool) -> dict:
    """Write the store for ``n`` utterances, profile an epoch (and the reads) in fresh
    processes (given the parent's ``flags``), delete the store."""
    need = synthetic_store_bytes(n, setup.n_mels)
    free = shutil.disk_usage(workdir).free
    if free < need + 2 * 2**30:
        raise RuntimeError(f"{n} utterances need {need / 2**30:.1f} GiB; {free / 2**30:.1f} free")
    folder = workdir / f"store-{n}"
    try:
        args = [str(folder), str(n), *flags]
        written = bench.run_child(Path(__file__), ["--child", "write", *args])["seconds"]
        result = bench.run_child(Path(__file__), ["--child", "epoch", *args])
        if read_probe:
            methods = ("mmap", "preadv")
            result["read_probe"] = [
                bench.run_child(Path(__file__), ["--child", m, *args]) for m in methods
            ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"store_gib": need / 2**30, "store_write_s": written, **result}


def verdicts(rows: list[dict]) -> dict:
    small, large = rows[0], rows[-1]

    def growth(key: str, less_embeddings: bool = False) -> float:
        def value(r: dict) -> float:
            m = r["memory_mib"]
            return m[key] - (m["embedding_matrix"] if less_embeddings else 0.0)

        return value(large) / value(small) - 1

    step_s = float(np.median([r["train_step_s"] for r in rows]))
    pooled = [pooled_epoch_s(r, step_s) / r["utterances"] for r in rows]
    passes = [corpus_passes_s(r) / r["utterances"] for r in rows]
    kmeans_share = [r["parts_s"]["kmeans"] / pooled_epoch_s(r, step_s) for r in rows]
    return {
        "from": small["utterances"],
        "to": large["utterances"],
        "peak_rss_growth": growth("peak_rss"),
        "peak_anon_growth": growth("peak_anon"),
        "peak_rss_growth_less_embeddings": growth("peak_rss", less_embeddings=True),
        "peak_anon_growth_less_embeddings": growth("peak_anon", less_embeddings=True),
        "rss_growth_below_20pct": bool(growth("peak_rss") < MAX_RSS_GROWTH),
        "anon_growth_below_20pct": bool(growth("peak_anon") < MAX_RSS_GROWTH),
        "rss_growth_less_embeddings_below_20pct": bool(
            growth("peak_rss", less_embeddings=True) < MAX_RSS_GROWTH
        ),
        "median_train_step_s": step_s,
        "epoch_s_per_1k_utterances": [1000 * r["epoch_s"] / r["utterances"] for r in rows],
        "pooled_epoch_s_per_1k_utterances": [1000 * v for v in pooled],
        "corpus_passes_s_per_1k_utterances": [1000 * v for v in passes],
        "max_time_per_utterance_deviation": _deviation(pooled),
        "corpus_passes_max_deviation": _deviation(passes),
        "time_linear_within_20pct": bool(_deviation(pooled) <= MAX_TIME_DEVIATION),
        "kmeans_share_of_pooled_epoch": kmeans_share,
        "kmeans_share_at_most_10pct": bool(kmeans_share[-1] <= MAX_KMEANS_SHARE),
    }


def _deviation(per_utterance: list[float]) -> float:
    return max(abs(v / per_utterance[0] - 1) for v in per_utterance)


def corpus_passes_s(row: dict) -> float:
    """Seconds of everything but the training pass (steps and their reads)."""
    return row["epoch_s"] - _training_pass_s(row)


def pooled_epoch_s(row: dict, step_s: float) -> float:
    """The epoch with its training pass costed at ``step_s`` per batch (read + step)."""
    return corpus_passes_s(row) + step_s * row["batches_full"]


def _training_pass_s(row: dict) -> float:
    reads = row["read_s"].get("train", 0.0) * row["batches_full"] / max(1, row["batches_run"])
    return row["parts_s"]["training_steps"] + reads


def plot(result: dict, path: Path) -> None:
    """Seconds per part and peak memory against corpus size (log-log), one small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, step_s = result["sizes"], result["verdicts"]["median_train_step_s"]
    n = np.array([r["utterances"] for r in rows]) / 1000
    epoch = np.array([pooled_epoch_s(r, step_s) for r in rows])
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    series = {
        "epoch (training at median step)": epoch,
        "training pass (median step)": np.array([step_s * r["batches_full"] for r in rows]),
        "embedding forward": [r["parts_s"]["embedding_forward"] for r in rows],
        "k-means": [r["parts_s"]["kmeans"] for r in rows],
        "chunk reads": [r["parts_s"]["data_loading"] for r in rows],
    }
    for label, values in series.items():
        ax_t.plot(n, values, "o-", label=label)
    ax_t.plot(n, epoch[0] * n / n[0], "k:", lw=1, label="linear")
    ax_t.set(xscale="log", yscale="log", xlabel="utterances (thousands)", ylabel="seconds")
    ax_t.set_ylim(top=epoch.max() * 40)  # headroom for the legend
    ax_t.legend(fontsize=6, loc="upper left")
    memory = {"peak RSS": "peak_rss", "anonymous": "peak_anon", "file-backed": "peak_file"}
    for label, key in memory.items():
        ax_m.plot(n, [r["memory_mib"][key] / 1024 for r in rows], "o-", label=label)
    embeddings = np.array([r["memory_mib"]["embedding_matrix"] / 1024 for r in rows])
    peak = np.array([r["memory_mib"]["peak_rss"] / 1024 for r in rows])
    ax_m.plot(n, peak - embeddings, "s--", label="peak RSS - N x d embeddings")
    ax_m.plot(n, embeddings, "k:", label="N x d embeddings")
    ax_m.set(xscale="log", xlabel="utterances (thousands)", ylabel="peak over the epoch, GiB")
    ax_m.legend(fontsize=6, loc="upper left")
    for ax in (ax_t, ax_m):
        ax.set_xticks(n, [f"{v:g}" for v in n])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(setup: Setup, workdir: Path, flags: list[str]) -> dict:
    load_before, began = bench.load_average(), time.perf_counter()
    rows = []
    for i, n in enumerate(sorted(setup.sizes)):
        last = i == len(setup.sizes) - 1
        rows.append(measure_size(n, setup, workdir, flags, read_probe=last))
        print(bench.row(SPECS, row_values(rows[-1])), flush=True)
    return {
        "benchmark": "scale",
        "setup": {
            "sizes": sorted(setup.sizes),
            "n_mels": setup.n_mels,
            "config_overrides": list(setup.overrides),
            "training_steps_run": setup.steps,
            "threads": rows[0]["threads"],
            "omp_wait_policy": rows[0]["omp_wait_policy"],
        },
        "sizes": rows,
        "verdicts": verdicts(rows),
        "wall_s": time.perf_counter() - began,
        "machine": bench.machine_info(("torch", "numpy", "faiss-cpu"), load_before),
    }


SPECS = (
    "7d",
    "8d",
    "10.2f",
    "9.1f",
    "7.1f",
    "7.1f",
    "7.1f",
    "7.1f",
    "13.0f",
    "7.0f",
    "7.0f",
    "8.0f",
)
TITLES = ("utts", "chunks", "store GiB", "epoch s", "embed", "kmeans", "train*", "read")
TITLES += ("peak RSS MiB", "anon", "file", "emb MiB")


def row_values(r: dict) -> tuple:
    p, m = r["parts_s"], r["memory_mib"]
    parts = (p["embedding_forward"], p["kmeans"], p["training_steps"], p["data_loading"])
    memory = (m["peak_rss"], m["peak_anon"], m["peak_file"], m["embedding_matrix"])
    return (r["utterances"], r["training_chunks"], r["store_gib"], r["epoch_s"], *parts, *memory)


def print_summary(r: dict) -> None:
    v, threads = r["verdicts"], r["setup"]["threads"]
    print(
        f"* training steps extrapolated from the batches run; times in seconds ({r['machine']['processor']})"
    )
    print(
        f"threads: torch {threads['torch']}, faiss {threads['faiss']}; OMP_WAIT_POLICY "
        f"{r['setup']['omp_wait_policy'] or 'unset'}"
    )
    for probe in r["sizes"][-1].get("read_probe", []):
        print(
            f"read all chunks via {probe['method']:6}: {probe['chunks_per_s']:8.0f} chunks/s, "
            f"peak RSS {probe['peak_rss_mib']:.0f} MiB (anon {probe['peak_anon_mib']:.0f}, "
            f"file {probe['peak_file_mib']:.0f})"
        )

    def listed(key: str) -> str:
        return ", ".join(f"{x:.1f}" for x in v[key])

    print(
        f"{v['from']} -> {v['to']} utterances: peak RSS {v['peak_rss_growth']:+.0%}, without the "
        f"N x d embeddings {v['peak_rss_growth_less_embeddings']:+.0%}; anonymous "
        f"{v['peak_anon_growth']:+.0%}, without the embeddings "
        f"{v['peak_anon_growth_less_embeddings']:+.0%} (target < 20 %: total "
        f"{bench.met(v['rss_growth_below_20pct'])}, without the embeddings "
        f"{bench.met(v['rss_growth_less_embeddings_below_20pct'])})"
    )
    print(
        f"k-means share of the epoch (training at the median step): "
        f"{', '.join(f'{x:.1%}' for x in v['kmeans_share_of_pooled_epoch'])} (target <= 10 % "
        f"at the largest size: {bench.met(v['kmeans_share_at_most_10pct'])})"
    )
    print(
        f"epoch s per 1k utterances: as measured {listed('epoch_s_per_1k_utterances')}; at the "
        f"median step time ({v['median_train_step_s']:.2f} s) "
        f"{listed('pooled_epoch_s_per_1k_utterances')} (linear within 20 %: "
        f"{'yes' if v['time_linear_within_20pct'] else 'no'}); without the training pass "
        f"{listed('corpus_passes_s_per_1k_utterances')}"
    )


def child(kind: str, folder: Path, n: int, setup: Setup) -> dict:
    """The child processes: write the store (its own process, so the epoch's ``ru_maxrss`` does
    not start from the writer's), one epoch, or one read probe (``mmap`` or ``preadv``)."""
    if kind == "epoch":
        return epoch_child(folder, n, setup)
    if kind in ("mmap", "preadv"):
        return read_child(folder, n, setup, kind)
    began = time.perf_counter()
    write_synthetic_store(folder, n, setup.n_mels)
    return {"seconds": time.perf_counter() - began}


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, RESULTS, "two tiny stores, seconds")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="utterances per store")
    parser.add_argument("--steps", type=int, default=None, help="training batches run per epoch")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are written")
    parser.add_argument("--plot", type=Path, default=None, help=f"PNG (full default: {PLOT})")
    parser.add_argument("--replot", type=Path, help="only redraw the plot from this JSON")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # kind, folder, utterances
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot or PLOT)
        return 0
    base = QUICK_SETUP if args.quick else FULL
    steps = args.steps or base.steps
    setup = Setup(tuple(args.sizes or base.sizes), base.n_mels, base.overrides, steps)
    if args.child:
        kind, folder, n = args.child
        return bench.child_result(child(kind, Path(folder), int(n), setup))
    flags = [*(["--quick"] if args.quick else []), "--steps", str(setup.steps)]
    print(bench.header(SPECS, TITLES))
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.workdir) as workdir:
        result = run(setup, Path(workdir), flags)
    result["mode"], result["command"] = bench.mode(args.quick), bench.command(argv)
    plot_path = args.plot or (None if args.quick else PLOT)
    if plot_path is not None:
        plot(result, plot_path)
        result["plot"] = str(plot_path)
        print(f"wrote {plot_path}")
    return bench.finish(result, args.out, print_summary)


if __name__ == "__main__":
    sys.exit(main())
