"""The clustering step against scikit-learn's k-means on the same embeddings, in the same run.

For every (N, K), on the same L2-normalised float32 embeddings (d = 256), each repetition times
``clustering.cluster`` as the trainer calls it (2 threads and 1), faiss from given initial
centroids, and scikit-learn's Lloyd k-means from the same centroids for the same iterations;
ratios are sklearn / faiss from the same repetitions. A probe repeats one cell in fresh processes
per OpenMP wait policy. Methods: benchmarks/README.md.

    python benchmarks/clustering.py [--quick] [--sizes 10000 100000 1000000] [--ks 10 30 100]
                                    [--reps R] [--skip N:K ...] [--out ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common as bench
import faiss
import numpy as np
import torch  # noqa: F401  (torch before faiss: one OpenMP runtime, as in the library)
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from deepemocluster import clustering

RESULTS = bench.RESULTS_DIR / "clustering.json"
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
                print_row(cells[-1])
    return cells


def wait_policy_probe(n: int, k: int) -> dict:
    """One cell in fresh processes, default OpenMP wait policy against PASSIVE."""
    cells = bench.per_wait_policy(Path(__file__), ["--cell", str(n), str(k)])
    out = {"n": n, "k": k}
    for policy, cell in cells.items():
        out[policy] = {key: cell[key] for key in ("best_s", "ours_1_thread_over_2")}
    out["default_over_passive_ours"] = (
        out["default"]["best_s"]["ours"] / out["PASSIVE"]["best_s"]["ours"]
    )
    return out


def run(sizes: list[int], ks: list[int], reps: int, skip: set, probe: tuple[int, int]) -> dict:
    clustering.set_threads(THREADS)
    load_before, began = bench.load_average(), time.perf_counter()
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
        "machine": bench.machine_info(("torch", "numpy", "faiss-cpu", "scikit-learn"), load_before),
    }


SPECS = ("9d", "5d", "9.3f", "10.3f", "9.3f", "11.3f", "10.2f", "10.2f", "9.2f", "10d", "13.4f")
TITLES = ("N", "K", "ours s", "1 thread", "faiss s", "sklearn s", "sk/faiss", "per iter")
TITLES += ("sk/ours", "sk iters", "inertia f/s")


def print_row(c: dict) -> None:
    b = c["best_s"]
    sk_iters = min(c["runs"]["sklearn"], key=lambda r: r["seconds"])["iterations"]
    times = (b["ours"], b["ours_1_thread"], b["faiss"], b["sklearn"])
    ratios = (
        c["sklearn_over_faiss"],
        c["sklearn_over_faiss_per_iteration"],
        c["sklearn_over_ours"],
    )
    values = (c["n"], c["k"], *times, *ratios, sk_iters, c["inertia_faiss_over_sklearn"])
    print(bench.row(SPECS, values), flush=True)


def print_probe(r: dict) -> None:
    w = r["wait_policy"]
    print(f"wait-policy probe, N = {w['n']}, K = {w['k']}, fresh processes (seconds):")
    specs = (">17", "8.2f", "10.2f", "8.2f", "9.2f")
    print(bench.header(specs, ("OMP_WAIT_POLICY", "ours", "1 thread", "faiss", "sklearn")))
    for policy in ("default", "PASSIVE"):
        b = w[policy]["best_s"]
        print(bench.row(specs, (policy, b["ours"], b["ours_1_thread"], b["faiss"], b["sklearn"])))
    m = r["machine"]
    print(f"{m['processor']}; load average {m['loadavg_before']} -> {m['loadavg_after']}")


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, RESULTS, "small N, one K, one repetition")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of chunks")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="numbers of clusters")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="N:K", help="grid cells to leave out"
    )
    parser.add_argument("--cell", type=int, nargs=2, help=argparse.SUPPRESS)  # probe child
    args = parser.parse_args(argv)
    if args.cell:  # one cell, one repetition (the wait-policy probe)
        clustering.set_threads(THREADS)
        with threadpool_limits(THREADS):
            return bench.child_result(measure_cell(embeddings(args.cell[0]), args.cell[1], 1))
    skip = {tuple(int(v) for v in s.split(":")) for s in args.skip}
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    ks = args.ks or list(QUICK_KS if args.quick else KS)
    reps = args.reps or (1 if args.quick else 3)
    print(f"{THREADS} threads, {ITERATIONS} iterations, d = {DIM}, best of {reps}")
    print(bench.header(SPECS, TITLES))
    result = run(sizes, ks, reps, skip, QUICK_PROBE if args.quick else PROBE)
    result["mode"], result["command"] = bench.mode(args.quick), bench.command(argv)
    return bench.finish(result, args.out, print_probe)


if __name__ == "__main__":
    sys.exit(main())
