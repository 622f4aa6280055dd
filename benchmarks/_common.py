"""The harness every benchmark shares, so that a benchmark script holds only what it measures:
its command line and the end of its run, the machine it ran on, timing, memory readings, child
processes and the results file (which refuses non-finite figures)."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parents[1]  # the repository: configs/, docs/
K = TypeVar("K")

# The tiny demo config of the quick modes that train (seconds per run, for the test suite)
TINY_RUN = (
    "data.demo.n_train=48",
    "data.demo.n_dev=16",
    "data.demo.n_test=16",
    "data.demo.n_unlabelled=24",
    "data.demo.n_speakers=12",
    "data.demo.n_episodes=0",  # configs/default.yaml's long episodes: not in a quick run
    "features.n_mels=32",
    "chunking.n_chunks=3",
    "model.channels=[4,8,8,16]",
    "model.strides=[1,2,2,2]",
    "model.embed_dim=32",
    "model.head_dim=32",
    "train.batch_utterances=8",
    "cluster.k=4",
)


# The command line and the end of a run


def parser(doc: str, out: Path | None = None, quick: str | None = None) -> argparse.ArgumentParser:
    """The flags benchmarks share: ``--quick`` (when ``quick`` gives its help) and ``--out``
    (default ``out``); the description is the first paragraph of ``doc``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=quick)
    if out is not None:
        p.add_argument("--out", type=Path, default=out, help=f"JSON results (default {out.name})")
    return p


def mode(quick: bool) -> str:
    return "quick" if quick else "full"


def command(argv: list[str] | None) -> str:
    """The command line as typed, for the JSON: a figure is only as good as its settings."""
    return " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])


def finish(result: dict, out: Path, report: Callable[[dict], None] | None = None) -> int:
    """The end of every benchmark's ``main``: print the summary, write the JSON."""
    if report is not None:
        report(result)
    write_results(result, out)
    return 0


def row(specs: Sequence[str], values: Sequence) -> str:
    """One line of a printed table: each value in its format spec (``<30``, ``9.1f``, ``8.1%``);
    None leaves its cell blank."""
    cells = (
        " " * _width(s) if v is None else format(v, s) for s, v in zip(specs, values, strict=True)
    )
    return "".join(cells)


def header(specs: Sequence[str], titles: Sequence[str]) -> str:
    """Column titles aligned as ``row`` aligns the values under them."""
    return "".join(
        format(t, f"{'<' if s.startswith('<') else '>'}{_width(s)}")
        for s, t in zip(specs, titles, strict=True)
    )


def _width(spec: str) -> int:
    return int(re.match(r"[<>^]?(\d*)", spec).group(1) or 0)


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


# The machine


def machine_info(
    packages: tuple[str, ...] = ("torch", "numpy"), load_before: list[float] | None = None
) -> dict:
    """CPU, platform, package versions and BLAS/OpenMP thread counts of this process; with
    ``load_before`` (taken when the measurement began) also the load average before and now."""
    info = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gib": _memory_gib(),
    }
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    for name in {"torch", "numpy"} & set(packages):  # loaded, so their thread pools are listed
        __import__(name)
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
    except ImportError:
        pass
    if load_before is not None:
        info["loadavg_before"], info["loadavg_after"] = load_before, load_average()
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_capabilities() -> dict:
    """What torch dispatches on this CPU and the bfloat16 units it has: the CPU kind a figure
    belongs to (an AVX2-only CPU, an AVX512-BF16 one and an AMX one differ by several x)."""
    import torch

    from deepemocluster.runtime.hardware import detect

    caps = detect(torch.device("cpu"))
    return {
        "torch_cpu_capability": caps.cpu_capability,
        "avx512_bf16": caps.avx512_bf16,
        "amx_bf16": caps.amx_bf16,
        "onednn_max_isa": caps.onednn_max_isa,
    }


def library_threads(cfg) -> dict[str, int]:
    """Set torch's and faiss's threads as ``training.run.run`` sets them; returns the counts."""
    import torch

    from deepemocluster import clustering

    threads = {"torch": cfg.train.threads, "faiss": cfg.cluster.threads or cfg.train.threads}
    torch.set_num_threads(threads["torch"])
    clustering.set_threads(threads["faiss"])
    return threads


# The results file


def write_results(result: dict, path: Path) -> None:
    """Refuse non-finite figures, then write ``result`` as indented JSON."""
    bad = [k for k, v in numbers(result) if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"non-finite figures: {bad}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def numbers(obj, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a nested dict/list, with its dotted path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, float):
        yield prefix, obj


# Timing and statistics


def seconds_per_call(
    fn: Callable[[], object], calls: int = 1, sync: Callable[[], None] | None = None
) -> list[float]:
    """Wall seconds of each of ``calls`` calls; ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    before the clock starts and before it stops, so queued GPU work is counted where it ran."""
    times = []
    for _ in range(calls):
        if sync is not None:
            sync()
        began = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - began)
    return times


def interleaved(
    fns: Mapping[K, Callable[[], object]],
    rounds: int,
    calls: int | Mapping[K, int] = 1,
    sync: Callable[[], None] | None = None,
    warm_up: bool = True,
) -> dict[K, list[float]]:
    """Seconds per call of every function: one warm-up call each (allocators, oneDNN primitive
    caches), then ``rounds`` rounds that call each in turn (``calls`` times, or per key), so
    every variant sees the same machine load and a ratio of two is fair on a shared machine."""
    if warm_up:
        for fn in fns.values():
            fn()
    times: dict[K, list[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            n = calls if isinstance(calls, int) else calls[key]
            times[key] += seconds_per_call(fn, n, sync)
    return times


def interval(values: list[float]) -> dict:
    """Mean and two-sided 95 % t-interval (t with n - 1 degrees of freedom; needs >= 2 values)."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return {"mean": float(v.mean()), "ci95": [float(v.mean() - half), float(v.mean() + half)]}


# Memory


def peak_rss_mib() -> float:
    """ru_maxrss of this process (Linux: KiB). It counts resident pages of memory-mapped files
    too, and a child process starts from its parent's high-water mark at fork (kept across exec):
    ``VmHWM`` from ``rss_now_mib`` is this process image's own peak."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> dict[str, float]:
    """Current RSS split into anonymous (heap, arrays) and file-backed (memory maps, libraries),
    and ``VmHWM``, the peak RSS since this process started (or exec'd)."""
    fields = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return fields


class RssSampler:
    """Polls /proc/self/status in a thread and keeps the peak of each RSS field; ru_maxrss alone
    cannot tell anonymous memory from page-cache pages of a memory-mapped feature file."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s, self.peak = interval_s, rss_now_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        for key, value in rss_now_mib().items():
            self.peak[key] = max(self.peak.get(key, 0.0), value)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        """A last sample: a block shorter than the interval is still seen once."""
        self._stop.set()
        self._thread.join()
        self._sample()

    def memory_mib(self) -> dict[str, float | None]:
        """This process's peak RSS (``VmHWM``), ``ru_maxrss`` and the sampled anonymous and
        file-backed peaks (None where /proc has no such field)."""
        return {
            "peak_rss": rss_now_mib()["VmHWM"],
            "ru_maxrss": peak_rss_mib(),
            "peak_anon": self.peak.get("RssAnon"),
            "peak_file": self.peak.get("RssFile"),
        }


# Child processes


def run_child(script: Path, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python script args`` in a fresh process (optionally with extra environment, e.g. an
    OpenMP setting that is read once at start-up); its last stdout line is a JSON object."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_result(result: dict) -> int:
    """The end of a child process: its result as the last stdout line (``run_child`` reads it)."""
    print(json.dumps(result))
    return 0


def per_wait_policy(script: Path, args: list[str]) -> dict[str, dict]:
    """``run_child(script, args)`` with the default OpenMP wait policy and with PASSIVE (read once,
    when the OpenMP runtime starts): on a loaded machine spinning threads can cost more than
    they save."""
    return {
        "default": run_child(script, args),
        "PASSIVE": run_child(script, args, {"OMP_WAIT_POLICY": "PASSIVE"}),
    }
