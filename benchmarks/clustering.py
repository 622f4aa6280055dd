"""The clustering step against scikit-learn's k-means on the same embeddings, in the same run.

For every (N, K) of the grid, on the same float32 embeddings (d = 256, a Gaussian mixture,
L2-normalised as the training loop leaves them), each repetition times in turn:

- ``ours``: ``deepemocluster.clustering.cluster`` as the trainer calls it (no PCA, L2 on; faiss
  k-means with its own initialisation, no subsampling, no early stop, then the assignment search);
- ``ours_1_thread``: the same with faiss on one OpenMP thread;
- ``faiss``: the same faiss settings as ``run_kmeans``, started from given initial centroids;
- ``sklearn``: ``KMeans(algorithm="lloyd", n_init=1, init=<the same centroids>, max_iter=<the
  same iterations>, tol=0)``; it may still stop early on "strict convergence" (no label changed),
  so its iteration count is recorded and a per-iteration ratio is given beside the total.

Both libraries run on the same threads (faiss.omp_set_num_threads, threadpoolctl). Figures are the
best of ``--reps`` (one repetition from N = 500k up); ratios are sklearn / faiss from the same
repetitions. A probe then repeats one cell in fresh processes with the default OpenMP wait policy
and with ``OMP_WAIT_POLICY=PASSIVE`` (read once, when the OpenMP runtime starts): on a shared,
loaded machine, spinning OpenMP threads can make faiss's many short parallel regions far slower
on 2 threads than on 1.

    python benchmarks/clustering.py [--quick] [--sizes 10000 100000 1000000] [--ks 10 30 100]
                                    [--reps R] [--skip N:K ...] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import torch  # noqa: F401  (torch before faiss: one OpenMP runtime, as in the library)
from _common import RESULTS_DIR, load_average, machine_info, run_child, write_results
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from deepemocluster import clustering

RESULTS = RESULTS_DIR / "clustering.json"
THREADS = 2
DIM = 256
ITERATIONS = 20  # cluster.iterations default
SIZES, KS = (10_000, 100_000, 1_000_000), (10, 30, 100)
QUICK_SIZES, QUICK_KS = (2_000, 5_000), (10,)
LARGE_N = 500_000  # from here on, one repetition per cell
PROBE, QUICK_PROBE = (100_000, 30), (2_000, 10)


def embeddings(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    """(n, d) float32, L2-normalised: 64 Gaussian blobs of unequal spread and size."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d), dtype=np.float32)
    which = rng.choice(64, n, p=rng.dirichlet(np.ones(64)))
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= rng.uniform(0.3, 1.5, 64).astype(np.float32)[which, None]
    x += centres[which]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def ours(x: np.ndarray, k: int, seed: int, threads: int = THREADS) -> dict:
    """The library step alone is timed, on a copy it may overwrite (as the trainer hands over its
    fresh embeddings); the copy and the inertia check after it are not timed."""
    own = x.copy()
    clustering.set_threads(threads)
    try:
        began = time.perf_counter()
        result = clustering.cluster(own, k, ITERATIONS, seed, pca_dim=0, l2_normalize=True)
        seconds = time.perf_counter() - began
    finally:
        clustering.set_threads(THREADS)
    return {"seconds": seconds, "inertia": _inertia(x, result.centroids, result.assignments)}


def faiss_same_init(x: np.ndarray, init: np.ndarray) -> dict:
    """``run_kmeans``'s faiss settings, from the given centroids. ``early_stop_threshold = 0``
    still ends the run once the objective stops decreasing (converged), hence the count."""
    n, d = x.shape
    km = faiss.Kmeans(
        d, len(init), niter=ITERATIONS, max_points_per_centroid=n, min_points_per_centroid=1
    )
    km.cp.early_stop_threshold = 0.0
    km.train(x, init_centroids=init)
    sq_dist, _ = km.index.search(x, 1)
    return {"iterations": len(km.obj), "inertia": float(sq_dist.sum(dtype=np.float64))}


def sklearn_same_init(x: np.ndarray, init: np.ndarray) -> dict:
    km = KMeans(
        len(init), init=init, n_init=1, max_iter=ITERATIONS, tol=0.0, algorithm="lloyd"
    ).fit(x)
    return {"iterations": int(km.n_iter_), "inertia": float(km.inertia_)}


def _inertia(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray) -> float:
    total = 0.0
    for start in range(0, len(x), 100_000):
        diff = x[start : start + 100_000] - centroids[assignments[start : start + 100_000]]
        total += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return total


def timed(fn: Callable[[], dict]) -> dict:
    """``fn``'s result with its wall seconds, unless ``fn`` timed itself."""
    began = time.perf_counter()
    out = fn()
    return {"seconds": time.perf_counter() - began, **out}


def measure_cell(x: np.ndarray, k: int, reps: int) -> dict:
    """``reps`` interleaved repetitions of every variant on the same data and init."""
    runs: dict[str, list[dict]] = {"ours": [], "ours_1_thread": [], "faiss": [], "sklearn": []}
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        init = np.ascontiguousarray(x[rng.choice(len(x), k, replace=False)])
        runs["ours"].append(timed(lambda rep=rep: ours(x, k, seed=rep)))
        runs["ours_1_thread"].append(timed(lambda rep=rep: ours(x, k, seed=rep, threads=1)))
        runs["faiss"].append(timed(lambda init=init: faiss_same_init(x, init)))
        runs["sklearn"].append(timed(lambda init=init: sklearn_same_init(x, init)))
    best = {name: min(r, key=lambda r: r["seconds"]) for name, r in runs.items()}
    sk, fa = best["sklearn"], best["faiss"]
    return {
        "n": len(x),
        "k": k,
        "d": x.shape[1],
        "runs": runs,
        "best_s": {name: r["seconds"] for name, r in best.items()},
        "sklearn_over_faiss": sk["seconds"] / fa["seconds"],
        "sklearn_over_faiss_per_iteration": (sk["seconds"] / sk["iterations"])
        / (fa["seconds"] / fa["iterations"]),
        "sklearn_over_ours": sk["seconds"] / best["ours"]["seconds"],
        "ours_1_thread_over_2": best["ours_1_thread"]["seconds"] / best["ours"]["seconds"],
        "inertia_faiss_over_sklearn": fa["inertia"] / sk["inertia"],
    }


def measure_grid(sizes: list[int], ks: list[int], reps: int, skip: set[tuple[int, int]]) -> list:
    full = embeddings(max(sizes))
    cells = []
    with threadpool_limits(THREADS):
        for n in sorted(sizes):
            for k in ks:
                if (n, k) in skip:
                    continue
                cells.append(measure_cell(full[:n], k, reps if n < LARGE_N else 1))
                print_row(cells[-1], flush=True)
    return cells


def wait_policy_probe(n: int, k: int) -> dict:
    """One cell in fresh processes, default OpenMP wait policy against PASSIVE."""
    out = {"n": n, "k": k}
    for policy in ("default", "PASSIVE"):
        env = {} if policy == "default" else {"OMP_WAIT_POLICY": policy}
        cell = run_child(Path(__file__), ["--cell", str(n), str(k)], env)
        out[policy] = {
            "best_s": cell["best_s"],
            "ours_1_thread_over_2": cell["ours_1_thread_over_2"],
        }
    out["default_over_passive_ours"] = (
        out["default"]["best_s"]["ours"] / out["PASSIVE"]["best_s"]["ours"]
    )
    return out


def run(sizes: list[int], ks: list[int], reps: int, skip: set, probe: tuple[int, int]) -> dict:
    clustering.set_threads(THREADS)
    load_before = load_average()
    began = time.perf_counter()
    cells = measure_grid(sizes, ks, reps, skip)
    wait_policy = wait_policy_probe(*probe)
    return {
        "benchmark": "clustering",
        "threads": THREADS,
        "iterations": ITERATIONS,
        "dim": DIM,
        "repetitions": reps,
        "statistic": "best",
        "grid": {"sizes": sorted(sizes), "ks": list(ks), "skipped": sorted(skip)},
        "cells": cells,
        "wait_policy": wait_policy,
        "wall_s": time.perf_counter() - began,
        "machine": machine_info(("torch", "numpy", "faiss-cpu", "scikit-learn"), load_before),
    }


HEADER = (
    f"{'N':>9}{'K':>5}{'ours s':>9}{'1 thread':>10}{'faiss s':>9}{'sklearn s':>11}"
    f"{'sk/faiss':>10}{'per iter':>10}{'sk/ours':>9}{'sk iters':>10}{'inertia f/s':>13}"
)


def print_row(c: dict, flush: bool = False) -> None:
    b = c["best_s"]
    sk_iters = min(c["runs"]["sklearn"], key=lambda r: r["seconds"])["iterations"]
    print(
        f"{c['n']:9d}{c['k']:5d}{b['ours']:9.3f}{b['ours_1_thread']:10.3f}{b['faiss']:9.3f}"
        f"{b['sklearn']:11.3f}{c['sklearn_over_faiss']:10.2f}"
        f"{c['sklearn_over_faiss_per_iteration']:10.2f}{c['sklearn_over_ours']:9.2f}"
        f"{sk_iters:10d}{c['inertia_faiss_over_sklearn']:13.4f}",
        flush=flush,
    )


def print_probe(w: dict) -> None:
    print(f"wait-policy probe, N = {w['n']}, K = {w['k']}, fresh processes (seconds):")
    print(f"{'OMP_WAIT_POLICY':>17}{'ours':>8}{'1 thread':>10}{'faiss':>8}{'sklearn':>9}")
    for policy in ("default", "PASSIVE"):
        b = w[policy]["best_s"]
        print(
            f"{policy:>17}{b['ours']:8.2f}{b['ours_1_thread']:10.2f}{b['faiss']:8.2f}"
            f"{b['sklearn']:9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, one K, one repetition")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of chunks")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="numbers of clusters")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="N:K", help="grid cells to leave out"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--cell", type=int, nargs=2, help=argparse.SUPPRESS)  # probe child
    args = parser.parse_args(argv)
    if args.cell:  # one cell, one repetition, JSON on stdout (the wait-policy probe)
        clustering.set_threads(THREADS)
        with threadpool_limits(THREADS):
            cell = measure_cell(embeddings(args.cell[0]), args.cell[1], 1)
        print(json.dumps(cell))
        return 0
    skip = {tuple(int(v) for v in s.split(":")) for s in args.skip}
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    ks = args.ks or list(QUICK_KS if args.quick else KS)
    reps = args.reps or (1 if args.quick else 3)
    print(f"{THREADS} threads, {ITERATIONS} iterations, d = {DIM}, best of {reps}")
    print(HEADER)
    result = run(sizes, ks, reps, skip, QUICK_PROBE if args.quick else PROBE)
    result["mode"] = "quick" if args.quick else "full"
    result["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    print_probe(result["wait_policy"])
    print(
        f"load average {result['machine']['loadavg_before']} -> {result['machine']['loadavg_after']}"
    )
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
