"""Feature extraction throughput: the feature store end to end against plain librosa mel.

End to end is ``FeatureStore.extract`` into a fresh store (hashing, decoding, mel, ``.npy``
writes, the worker threads); raw is ``librosa.feature.melspectrogram`` with the same settings on
the same, already decoded audio. Both in audio-seconds per wall-second, best of ``--reps`` after
a warm-up, in the same run. Target: end to end with 2 workers >= 0.7 x raw. Beside them: a
per-stage profile, the worker pool's start-up, and (full runs) what a spawned worker process
would pay and the passes with one BLAS thread per process. Methods: benchmarks/README.md.

    python benchmarks/features.py [--quick] [--files N] [--reps R] [--out benchmarks/results/features.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import _common as bench
import librosa
import numpy as np
from threadpoolctl import threadpool_limits

from deepemocluster.config.schema import DemoConfig, FeatureConfig
from deepemocluster.data.audio import load_audio, mel_features
from deepemocluster.data.demo import generate_demo_corpus
from deepemocluster.data.features import FeatureSettings, FeatureStore, entry_key

RESULTS = bench.RESULTS_DIR / "features.json"
TARGET_WORKERS = 2
TARGET_RATIO = 0.7
WORKERS = (1, 2)
FULL_FILES = 300  # ~15 min of audio at 1.5-4.5 s per file
QUICK_FILES = 8


def make_corpus(root: Path, n_files: int, seed: int = 0) -> list[str]:
    """``n_files`` demo-corpus wav paths under ``root`` (1.5-4.5 s, 16 kHz mono: no resampling)."""
    cfg = DemoConfig(seed=seed, n_train=n_files, n_dev=0, n_test=0, n_unlabelled=0, n_speakers=1)
    generate_demo_corpus(root, cfg)
    return sorted(str(p) for p in (root / "Audios").glob("*.wav"))


# Measurements


def raw_mel_pass(audios: list[np.ndarray], settings: FeatureSettings) -> float:
    """Seconds for plain librosa mel over already-decoded audio, in this process."""
    began = time.perf_counter()
    for audio in audios:
        librosa.feature.melspectrogram(
            y=audio,
            sr=settings.sample_rate,
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            n_mels=settings.n_mels,
        )
    return time.perf_counter() - began


def extract_pass(paths: list[str], settings: FeatureSettings, workers: int, tmp: Path) -> float:
    """Seconds for one ``extract`` into a fresh store (created inside the timed region)."""
    with tempfile.TemporaryDirectory(dir=tmp) as store_root:
        began = time.perf_counter()
        result = FeatureStore(store_root, settings).extract(paths, workers=workers)
        elapsed = time.perf_counter() - began
    if result.skipped or len(result.keys) != len(paths):
        raise RuntimeError(f"extraction skipped files: {result.skipped[:3]}")
    return elapsed


def stage_profile(paths: list[str], settings: FeatureSettings, tmp: Path) -> dict[str, float]:
    """Seconds per stage of one in-process pass, the same steps as ``_extract_one``."""
    stages = dict.fromkeys(("key", "decode", "mel", "log", "write"), 0.0)
    params = asdict(settings)
    with tempfile.TemporaryDirectory(dir=tmp) as store_root:
        store = FeatureStore(store_root, settings)
        for path in paths:
            t0 = time.perf_counter()
            key = entry_key(path)
            t1 = time.perf_counter()
            audio = load_audio(path, settings.sample_rate, min_samples=settings.n_fft)
            t2 = time.perf_counter()
            mel = mel_features(audio, **{**params, "kind": "mel"})
            t3 = time.perf_counter()
            if settings.kind == "log_mel":
                mel = np.log(mel + settings.log_offset)
            t4 = time.perf_counter()
            target = store.entry_path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{target.name}.tmp")
            with open(part, "wb") as f:
                np.save(f, mel)
            os.replace(part, target)
            t5 = time.perf_counter()
            for name, seconds in zip(
                stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
            ):
                stages[name] += seconds
    return stages


_COLD = """
import json, sys, time
t0 = time.perf_counter()
from deepemocluster.config.schema import DemoConfig, FeatureConfig
from deepemocluster.data.features import FeatureSettings
t1 = time.perf_counter()
settings = FeatureSettings.from_config(vars(FeatureConfig()))
settings.compute(sys.argv[1])
t2 = time.perf_counter()
settings.compute(sys.argv[1])
t3 = time.perf_counter()
out = {"import_s": t1 - t0, "first_file_s": t2 - t1, "warm_file_s": t3 - t2}
if len(sys.argv) > 2:  # the module spawn re-imports as __mp_main__ under the training CLI
    t4 = time.perf_counter()
    try:
        __import__(sys.argv[2])
        out["cli_import_s"] = time.perf_counter() - t4
    except Exception as e:
        out["cli_import_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def cold_start(path: str, cli_module: str = "deepemocluster.train") -> dict:
    """What a freshly spawned worker pays before its first file: interpreter start, imports, the
    first call's lazy imports; and the import of the training CLI, which spawn re-imports in every
    worker as ``__mp_main__`` when extraction runs under it."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - began
    argv = [sys.executable, "-c", _COLD, path, cli_module]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["first_call_overhead_s"] = max(0.0, result.pop("first_file_s") - result["warm_file_s"])
    return {"interpreter_s": interpreter, **result}


# The run


def _rates(times: list[float], audio_seconds: float, raw_rate: float | None = None) -> dict:
    out = {
        "seconds": min(times),
        "all_seconds": times,
        "audio_s_per_s": audio_seconds / min(times),
    }
    if raw_rate is not None:
        out["ratio_to_raw"] = out["audio_s_per_s"] / raw_rate
    return out


def _passes(audios, paths, settings, stores, reps: int) -> tuple[list[float], dict[int, list]]:
    """``reps`` rounds of raw mel and end to end for every worker count, interleaved so that each
    round sees the same machine load."""
    raw, e2e = [], {w: [] for w in WORKERS}
    for _ in range(reps):
        raw.append(raw_mel_pass(audios, settings))
        for workers in WORKERS:
            e2e[workers].append(extract_pass(paths, settings, workers, stores))
    return raw, e2e


def pool_startup(paths, audios, settings, stores, reps: int, e2e: dict, extras: bool) -> dict:
    """The worker pool's start-up. Full runs: a pool pass over the shortest files that still use
    the pool, less the same files in process; quick runs (no time for more pools): the 2-worker
    pass less half the 1-worker pass."""
    if not extras:
        seconds = e2e["1"]["seconds"] / TARGET_WORKERS
        startup = max(0.0, e2e[str(TARGET_WORKERS)]["seconds"] - seconds)
        method = f"{TARGET_WORKERS}-worker pass less 1-worker pass / {TARGET_WORKERS}"
        return {"workers": TARGET_WORKERS, "seconds": startup, "method": method}
    shortest = sorted(range(len(paths)), key=lambda i: audios[i].size)[: 2 * TARGET_WORKERS]
    few = [paths[i] for i in shortest]
    pooled = [extract_pass(few, settings, TARGET_WORKERS, stores) for _ in range(reps)]
    serial = [extract_pass(few, settings, 1, stores) for _ in range(reps)]
    method = f"{TARGET_WORKERS}-worker pass over {len(few)} short files less the same in process"
    return {
        "workers": TARGET_WORKERS,
        "seconds": max(0.0, min(pooled) - min(serial)),
        "method": method,
    }


def run(n_files: int, reps: int, workdir: Path, extras: bool = True) -> dict:
    """The passes; with ``extras`` also a spawned worker's cost and the one-BLAS-thread passes."""
    settings = FeatureSettings.from_config(asdict(FeatureConfig()))
    load_before = bench.load_average()
    paths = make_corpus(workdir / "corpus", n_files)
    audios = [load_audio(p, settings.sample_rate, min_samples=settings.n_fft) for p in paths]
    audio_seconds = sum(a.size for a in audios) / settings.sample_rate
    stores = workdir / "stores"
    stores.mkdir(exist_ok=True)
    # Warm-up: imports, lazy librosa modules, filterbank cache, file system cache of the corpus.
    raw_mel_pass(audios[:2], settings)
    extract_pass(paths[:2], settings, 1, stores)
    stage_profile(paths[:2], settings, stores)

    raw, e2e = _passes(audios, paths, settings, stores, reps)
    raw_rate = audio_seconds / min(raw)
    end_to_end = {str(w): _rates(t, audio_seconds, raw_rate) for w, t in e2e.items()}
    decode = []
    for _ in range(reps):
        began = time.perf_counter()
        for p in paths:
            load_audio(p, settings.sample_rate, min_samples=settings.n_fft)
        decode.append(time.perf_counter() - began)
    profiles = [stage_profile(paths, settings, stores) for _ in range(reps)]
    startup = pool_startup(paths, audios, settings, stores, reps, end_to_end, extras)
    target_run = end_to_end[str(TARGET_WORKERS)]
    e2e_s = target_run["seconds"]
    if e2e_s - startup["seconds"] > 0.2 * e2e_s:  # else the difference is noise, not a rate
        steady = audio_seconds / (e2e_s - startup["seconds"])
        target_run["excluding_pool_startup"] = {
            "audio_s_per_s": steady,
            "ratio_to_raw": steady / raw_rate,
        }
    shortest = paths[int(np.argmin([a.size for a in audios]))]
    cold = cold_start(shortest) if extras else {}
    variants = {}
    if extras:  # the same passes with one BLAS thread per process
        with threadpool_limits(1):
            raw1, e2e1 = _passes(audios, paths, settings, stores, reps)
        variants["blas_1_thread"] = {
            "raw_mel": _rates(raw1, audio_seconds),
            "end_to_end": {
                str(w): {
                    **_rates(t, audio_seconds, raw_rate),
                    "ratio_to_own_raw": min(raw1) / min(t),
                }
                for w, t in e2e1.items()
            },
        }
    ratio = target_run["ratio_to_raw"]
    return {
        "benchmark": "features",
        "machine": bench.machine_info(("torch", "librosa", "numpy", "soundfile"), load_before),
        "settings": asdict(settings),
        "corpus": {
            "source": "demo",
            "files": len(paths),
            "audio_seconds": audio_seconds,
            "sample_rate": settings.sample_rate,
        },
        "repetitions": reps,
        "statistic": "best",
        "raw_mel": _rates(raw, audio_seconds),
        "decode_only": _rates(decode, audio_seconds),
        "end_to_end": end_to_end,
        "pool_startup": startup,
        "cold_worker": cold,
        "stage_profile_seconds": min(profiles, key=lambda s: sum(s.values())),
        "variants": variants,
        "target": {
            "workers": TARGET_WORKERS,
            "min_ratio": TARGET_RATIO,
            "ratio": ratio,
            "met": bool(ratio >= TARGET_RATIO),
        },
    }


def print_table(r: dict) -> None:
    c, raw, dec = r["corpus"], r["raw_mel"], r["decode_only"]
    print(
        f"corpus: {c['files']} {c['source']} files, {c['audio_seconds']:.0f} s of audio; "
        f"{r['machine']['usable_cpus']} CPUs ({r['machine']['processor']}); best of {r['repetitions']}"
    )
    specs = ("<28", "9.3f", "12.0f", "8.2f")
    print(bench.header(specs, ("", "wall s", "audio-s/s", "x raw")))
    rows = [("raw librosa mel (decoded)", raw), ("decode only (load_audio)", dec)]
    rows += [(f"end to end, {w} worker{'s' * (w != '1')}", e) for w, e in r["end_to_end"].items()]
    for label, e in rows:
        ratio = e["audio_s_per_s"] / raw["audio_s_per_s"]
        print(bench.row(specs, (label, e["seconds"], e["audio_s_per_s"], ratio)))
    p, cold = r["pool_startup"], r["cold_worker"]
    print(f"worker pool start-up ({p['workers']} workers): {p['seconds']:.2f} s per pool")
    if cold:
        print(
            f"  a spawned worker would pay: interpreter {cold['interpreter_s']:.2f} s + imports "
            f"{cold['import_s']:.2f} s + first-call lazy imports {cold['first_call_overhead_s']:.2f} s"
            f"; training CLI import {cold.get('cli_import_s', float('nan')):.2f} s"
        )
    stages = r["stage_profile_seconds"]
    total = sum(stages.values()) or 1.0
    print("in-process stages: " + ", ".join(f"{k} {v / total:.0%}" for k, v in stages.items()))
    for name, v in r["variants"].items():
        parts = ", ".join(
            f"{w}: {e['audio_s_per_s']:.0f} ({e['ratio_to_raw']:.2f} x raw)"
            for w, e in v["end_to_end"].items()
        )
        print(
            f"variant {name}: raw {v['raw_mel']['audio_s_per_s']:.0f} audio-s/s; end to end {parts}"
        )
    t = r["target"]
    print(
        f"target: end to end with {t['workers']} workers >= {t['min_ratio']} x raw: "
        f"{t['ratio']:.2f} -> {bench.met(t['met'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, RESULTS, "a handful of files, one repetition")
    parser.add_argument(
        "--files", type=int, default=None, help=f"corpus size (default {FULL_FILES})"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    args = parser.parse_args(argv)
    n_files = args.files or (QUICK_FILES if args.quick else FULL_FILES)
    reps = args.reps or (1 if args.quick else 3)
    if n_files < 2 * TARGET_WORKERS:
        parser.error(f"--files must be at least {2 * TARGET_WORKERS} so the pool is used")
    with tempfile.TemporaryDirectory(prefix="bench-features-") as workdir:
        result = run(n_files, reps, Path(workdir), extras=not args.quick)
    result["mode"], result["command"] = bench.mode(args.quick), bench.command(argv)
    return bench.finish(result, args.out, print_table)


if __name__ == "__main__":
    sys.exit(main())
