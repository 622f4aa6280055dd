"""Scale: one epoch's time and peak memory against corpus size, on synthetic feature stores.

For each size, a packed feature store (the ``PackedFeatures`` layout, float32, 64 mels, utterances
of 1.5-11 s around 4 s) is written straight to disk, then a fresh process runs one real
``Trainer.run_epoch`` over it (joint clustering, a small encoder) and reports:

- the epoch's seconds by part, with the embedding pass, k-means and the Development pass run in
  full and the training pass cut to ``--steps`` batches and extrapolated to the full epoch
  (flagged ``extrapolated`` in the JSON);
- peak memory over the epoch: the process's peak RSS (``VmHWM``; what a job scheduler sees, and
  it would count resident pages of a memory-mapped store too), ``ru_maxrss`` (the same, except
  that a child inherits its parent's high-water mark, so the stores are written by a child of
  their own), and the peaks of anonymous and file-backed RSS sampled from /proc/self/status,
  beside the size of the embedding matrix that k-means needs (N chunks x d x 4 bytes), the one
  array that is meant to grow with the corpus.

Threads are the library defaults, set as ``train.run`` sets them (``train.threads`` for torch,
``cluster.threads`` or else ``train.threads`` for faiss).

A read probe then reads every training chunk of the largest store in fresh processes, once with
``ChunkDataset.chunk_batch`` (``os.preadv`` into the batch buffer) and once by slicing the memory
map (the read path before it, kept here for comparison), to show the store's page cache apart
from the process's own memory. The store is deleted after each size. Verdicts: peak RSS grows
< 20 % from the smallest to the largest size, given in total and without the embedding matrix;
epoch time per utterance stays within +-20 % (linear); k-means takes <= 10 % of the epoch. A
training step costs the same at every size (same batch, same model), so every size's training
pass is costed at the median step time over all sizes: load swings between the sizes' runs would
otherwise pass for non-linearity. The passes whose cost does depend on the corpus (embedding,
k-means, reads, Development) are also given per utterance on their own.

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
import numpy as np
import torch
from _common import (
    RESULTS_DIR,
    RssSampler,
    load_average,
    machine_info,
    open_synthetic_corpus,
    peak_rss_mib,
    rss_now_mib,
    run_child,
    synthetic_store_bytes,
    write_results,
    write_synthetic_store,
)
from omegaconf import DictConfig
from train_throughput import QUICK, bench_config, profile_epoch, profiled_trainer

from deepemocluster import clustering
from deepemocluster.data.features import ArrayRows
from deepemocluster.training.data import build_data
from deepemocluster.training.trainer import Trainer

RESULTS = RESULTS_DIR / "scale.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "perf_scale.png"
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
QUICK_SETUP = Setup((200, 600), 32, QUICK.overrides, 3)


# --------------------------------------------------------------------------------------------
# In the child process


def epoch_child(folder: Path, n: int, setup: Setup) -> dict:
    """One profiled epoch over the store in ``folder``, with this process's memory readings."""
    rss_start = rss_now_mib()
    cfg = bench_config([*setup.overrides, f"train.max_steps_per_pass={setup.steps or 0}"])
    threads = library_threads(cfg)
    data = build_data(open_synthetic_corpus(folder, n, setup.n_mels), cfg)
    trainer, timings = profiled_trainer(cfg, data, torch.device("cpu"))
    _warm_up(trainer)
    rss_ready = rss_now_mib()
    with RssSampler() as sampler:
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
            "peak_rss": rss_now_mib()["VmHWM"],
            "ru_maxrss": peak_rss_mib(),
            "peak_anon": sampler.peak.get("RssAnon"),
            "peak_file": sampler.peak.get("RssFile"),
            "start": rss_start,
            "ready": rss_ready,
            "embedding_matrix": embedding_mib,
        },
    }


def library_threads(cfg: DictConfig) -> dict[str, int]:
    """Thread counts as ``train.run`` sets them."""
    threads = {"torch": cfg.train.threads, "faiss": cfg.cluster.threads or cfg.train.threads}
    torch.set_num_threads(threads["torch"])
    clustering.set_threads(threads["faiss"])
    return threads


def _warm_up(trainer: Trainer) -> None:
    """One forward/backward outside the timed phases (first-call allocations, oneDNN primitives)."""
    train = trainer.data.train
    x, _ = train.chunk_batch(np.arange(min(64, train.n_total_chunks)))
    trainer.model.train()
    aux, pred = trainer.model(x)
    (aux.sum() + pred.sum()).backward()
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
    with RssSampler() as sampler:
        began = time.perf_counter()
        for start in range(0, ds.n_total_chunks, batch):
            ds.chunk_batch(np.arange(start, min(start + batch, ds.n_total_chunks)))
        seconds = time.perf_counter() - began
    return {
        "method": method,
        "chunks": ds.n_total_chunks,
        "seconds": seconds,
        "chunks_per_s": ds.n_total_chunks / seconds,
        "peak_rss_mib": rss_now_mib()["VmHWM"],
        "ru_maxrss_mib": peak_rss_mib(),
        "peak_anon_mib": sampler.peak.get("RssAnon"),
        "peak_file_mib": sampler.peak.get("RssFile"),
    }


# --------------------------------------------------------------------------------------------
# In the parent


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
        written = run_child(Path(__file__), ["--write-child", *args])["seconds"]
        result = run_child(Path(__file__), ["--epoch-child", *args])
        if read_probe:
            result["read_probe"] = [
                run_child(Path(__file__), ["--read-child", method, *args])
                for method in ("mmap", "preadv")
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
    load_before = load_average()
    began = time.perf_counter()
    rows = []
    for i, n in enumerate(sorted(setup.sizes)):
        last = i == len(setup.sizes) - 1
        rows.append(measure_size(n, setup, workdir, flags, read_probe=last))
        print_row(rows[-1], flush=True)
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
        "machine": machine_info(("torch", "numpy", "faiss-cpu"), load_before),
    }


HEADER = (
    f"{'utts':>7}{'chunks':>8}{'store GiB':>10}{'epoch s':>9}{'embed':>7}{'kmeans':>7}"
    f"{'train*':>7}{'read':>7}{'peak RSS MiB':>13}{'anon':>7}{'file':>7}{'emb MiB':>8}"
)


def print_row(r: dict, flush: bool = False) -> None:
    p, m = r["parts_s"], r["memory_mib"]
    print(
        f"{r['utterances']:7d}{r['training_chunks']:8d}{r['store_gib']:10.2f}{r['epoch_s']:9.1f}"
        f"{p['embedding_forward']:7.1f}{p['kmeans']:7.1f}{p['training_steps']:7.1f}"
        f"{p['data_loading']:7.1f}{m['peak_rss']:13.0f}{m['peak_anon']:7.0f}{m['peak_file']:7.0f}"
        f"{m['embedding_matrix']:8.0f}",
        flush=flush,
    )


def print_summary(r: dict) -> None:
    v, threads = r["verdicts"], r["setup"]["threads"]
    print("* training steps extrapolated from the batches run; times in seconds")
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
        f"{'met' if v['rss_growth_below_20pct'] else 'missed'}, without the embeddings "
        f"{'met' if v['rss_growth_less_embeddings_below_20pct'] else 'missed'})"
    )
    print(
        f"k-means share of the epoch (training at the median step): "
        f"{', '.join(f'{x:.1%}' for x in v['kmeans_share_of_pooled_epoch'])} (target <= 10 % "
        f"at the largest size: {'met' if v['kmeans_share_at_most_10pct'] else 'missed'})"
    )
    print(
        f"epoch s per 1k utterances: as measured {listed('epoch_s_per_1k_utterances')}; at the "
        f"median step time ({v['median_train_step_s']:.2f} s) "
        f"{listed('pooled_epoch_s_per_1k_utterances')} (linear within 20 %: "
        f"{'yes' if v['time_linear_within_20pct'] else 'no'}); without the training pass "
        f"{listed('corpus_passes_s_per_1k_utterances')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two tiny stores, seconds")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="utterances per store")
    parser.add_argument("--steps", type=int, default=None, help="training batches run per epoch")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are written")
    parser.add_argument("--plot", type=Path, default=None, help=f"PNG (full default: {PLOT})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--replot", type=Path, help="only redraw the plot from this JSON")
    parser.add_argument("--epoch-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--read-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--write-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot or PLOT)
        return 0
    base = QUICK_SETUP if args.quick else FULL
    setup = Setup(
        tuple(args.sizes or base.sizes), base.n_mels, base.overrides, args.steps or base.steps
    )
    if args.epoch_child or args.read_child or args.write_child:
        if args.write_child:
            began = time.perf_counter()
            write_synthetic_store(Path(args.write_child[0]), int(args.write_child[1]), setup.n_mels)
            out = {"seconds": time.perf_counter() - began}
        elif args.epoch_child:
            folder, n = args.epoch_child
            out = epoch_child(Path(folder), int(n), setup)
        else:
            method, folder, n = args.read_child
            out = read_child(Path(folder), int(n), setup, method)
        print(json.dumps(out))
        return 0
    flags = [*(["--quick"] if args.quick else []), "--steps", str(setup.steps)]
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.workdir) as workdir:
        result = run(setup, Path(workdir), flags)
    result["mode"] = "quick" if args.quick else "full"
    result["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    print_summary(result)
    plot_path = args.plot or (None if args.quick else PLOT)
    if plot_path is not None:
        plot(result, plot_path)
        result["plot"] = str(plot_path)
        print(f"wrote {plot_path}")
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
