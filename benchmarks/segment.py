"""Segmentation of long recordings: speed of speech detection + cutting, and memory against length.

Throughput: ``SegmentIndex.get`` (fresh cache) over demo episodes as 16 kHz mono wav and 44.1 kHz
stereo FLAC, silero-vad's JIT and ONNX models, 1 and 2 worker threads, in audio-seconds per
wall-second, best of ``--reps``, against silero's own ``get_speech_timestamps`` on the whole
decoded file in the same run. Memory: peak RSS of ``segment_file`` on 10-minute, 1-hour and
2-hour recordings, each in a fresh process. Goals: >= 100x real time with 2 threads; the 2-hour
peak within 20 % of the 10-minute one.

    python benchmarks/segment.py [--quick] [--reps R] [--out benchmarks/results/segment.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import _common as bench
import numpy as np
import soundfile as sf

from deepemocluster.config.schema import DemoConfig, SegmentConfig
from deepemocluster.data.audio import load_audio
from deepemocluster.data.demo_episodes import plan_episodes, render_episode
from deepemocluster.data.demo_plan import plan_corpus
from deepemocluster.data.demo_voice import SAMPLE_RATE
from deepemocluster.data.segments import (
    SegmentIndex,
    SegmentSettings,
    resolve_backend,
    segment_file,
)

RESULTS = bench.RESULTS_DIR / "segment.json"
TARGET_X_REALTIME = 100.0
TARGET_RSS_GROWTH = 1.2  # 2-hour peak / 10-minute peak
FULL = {"episodes": 4, "episode_s": 300.0, "lengths_min": [10, 60, 120], "reps": 2}
QUICK = {"episodes": 2, "episode_s": 30.0, "lengths_min": [1, 2], "reps": 1}
FORMATS = ("wav_16k_mono", "flac_44k_stereo")


def settings(backend: str) -> SegmentSettings:
    defaults = SegmentConfig()
    return SegmentSettings(**{**vars(defaults), "backend": backend})


def backends() -> list[str]:
    return ["jit", "onnx"] if importlib.util.find_spec("onnxruntime") else ["jit"]


# Audio


def episodes(n: int, seconds: float) -> list[np.ndarray]:
    cfg = DemoConfig(n_unlabelled=40, n_episodes=n, episode_seconds=seconds)
    return [render_episode(spec, cfg.seed)[0] for spec in plan_episodes(cfg, plan_corpus(cfg))]


def write_corpus(folder: Path, audio: list[np.ndarray]) -> dict[str, list[str]]:
    """The episodes as 16 kHz mono wav and as 44.1 kHz stereo FLAC."""
    import soxr

    out = {fmt: [] for fmt in FORMATS}
    for i, x in enumerate(audio):
        wav, flac = folder / f"ep{i}.wav", folder / f"ep{i}.flac"
        sf.write(wav, x, SAMPLE_RATE, subtype="PCM_16")
        y = soxr.resample(x, SAMPLE_RATE, 44100)
        sf.write(flac, np.stack([y, 0.8 * y], axis=1), 44100, subtype="PCM_16")
        out["wav_16k_mono"].append(str(wav))
        out["flac_44k_stereo"].append(str(flac))
    return out


def write_long(path: Path, episode: np.ndarray, minutes: float) -> Path:
    """``minutes`` of audio: the episode over and over, written block by block."""
    n = round(minutes * 60 * SAMPLE_RATE)
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as f:
        while n > 0:
            f.write(episode[:n])
            n -= min(n, len(episode))
    return path


# Throughput


def ours(paths: list[str], backend: str, workers: int, store: Path) -> float:
    began = time.perf_counter()
    found = SegmentIndex(store, settings(backend)).get(paths, workers)
    elapsed = time.perf_counter() - began
    if not all(hasattr(r, "segments") and r.segments for r in found.values()):
        raise RuntimeError(f"segmentation failed or found nothing: {found}")
    return elapsed


def baseline(paths: list[str]) -> float:
    """silero's documented use: the whole file in memory, ``get_speech_timestamps`` (JIT)."""
    import silero_vad
    import torch

    model = silero_vad.load_silero_vad()
    torch.set_num_threads(1)
    began = time.perf_counter()
    for path in paths:
        audio = torch.from_numpy(load_audio(path, SAMPLE_RATE))
        silero_vad.get_speech_timestamps(audio, model, sampling_rate=SAMPLE_RATE)
    return time.perf_counter() - began


def throughput(corpus: dict[str, list[str]], seconds: float, reps: int, tmp: Path) -> dict:
    out: dict = {"audio_seconds": seconds}
    base = min(baseline(corpus["wav_16k_mono"]) for _ in range(reps))
    out["baseline_get_speech_timestamps_jit"] = {"seconds": base, "x_realtime": seconds / base}
    for fmt, paths in corpus.items():
        for backend in backends():
            for workers in (1, 2):
                best = min(
                    ours(paths, backend, workers, tmp / f"store-{fmt}-{backend}-{workers}-{r}")
                    for r in range(reps)
                )
                out[f"{fmt}/{backend}/{workers}_workers"] = {
                    "seconds": best,
                    "x_realtime": seconds / best,
                    "vs_baseline": base / best,
                }
    return out


# Memory against length (each in a fresh process)


def child(path: str) -> dict:
    """Peak RSS of segmenting ``path`` in this fresh process, against its resting size (imports
    and the model, loaded by a 30 s warm-up file)."""
    backend = resolve_backend("auto")
    warm = Path(path).with_suffix(".warm.wav")
    sf.write(warm, sf.read(path, frames=30 * SAMPLE_RATE)[0], SAMPLE_RATE)
    segment_file(warm, settings(backend))
    resting = bench.rss_now_mib()
    began = time.perf_counter()
    found = segment_file(path, settings(backend))
    elapsed = time.perf_counter() - began
    return {
        "backend": backend,
        "resting_rss_mib": resting["VmRSS"],
        "peak_rss_mib": bench.rss_now_mib()["VmHWM"],
        "seconds": elapsed,
        "segments": len(found.segments),
        "audio_seconds": found.duration_s,
    }


def memory(episode: np.ndarray, lengths_min: list[float], tmp: Path) -> dict:
    out = {}
    for minutes in lengths_min:
        path = write_long(tmp / f"long_{minutes}min.wav", episode, minutes)
        result = bench.run_child(Path(__file__), ["--child", str(path)])
        result["file_mib"] = path.stat().st_size / 2**20
        result["x_realtime"] = result["audio_seconds"] / result["seconds"]
        out[f"{minutes}_min"] = result
        path.unlink()
    first, last = out[f"{lengths_min[0]}_min"], out[f"{lengths_min[-1]}_min"]
    out["peak_ratio_longest_to_shortest"] = last["peak_rss_mib"] / first["peak_rss_mib"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, RESULTS, "2 short episodes, 1- and 2-minute files")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return bench.child_result(child(args.child))
    mode = QUICK if args.quick else FULL
    load_before = bench.load_average()
    with tempfile.TemporaryDirectory(prefix="segment-bench-") as tmp_name:
        tmp = Path(tmp_name)
        audio = episodes(mode["episodes"], mode["episode_s"])
        seconds = sum(len(x) for x in audio) / SAMPLE_RATE
        speed = throughput(write_corpus(tmp, audio), seconds, args.reps or mode["reps"], tmp)
        rss = memory(audio[0], mode["lengths_min"], tmp)
    packages = ("torch", "numpy", "silero-vad", "onnxruntime", "soundfile", "soxr")
    result = {
        "benchmark": "segment",
        "mode": bench.mode(args.quick),
        "machine": bench.machine_info(packages, load_before),
        "settings": vars(SegmentConfig()),
        "throughput": speed,
        "memory": rss,
        "target": targets(speed, rss),
    }
    return bench.finish(result, args.out, report)


def targets(speed: dict, rss: dict) -> dict:
    """The goals, per input format, for the backend ``auto`` picks here, with 2 workers."""
    backend = resolve_backend("auto")
    x = {fmt: speed[f"{fmt}/{backend}/2_workers"]["x_realtime"] for fmt in FORMATS}
    return {
        "backend": backend,
        "x_realtime_2_workers": x,
        "x_realtime_goal": TARGET_X_REALTIME,
        "met_x_realtime": {fmt: v >= TARGET_X_REALTIME for fmt, v in x.items()},
        "rss_peak_ratio_goal": TARGET_RSS_GROWTH,
        "met_rss": rss["peak_ratio_longest_to_shortest"] <= TARGET_RSS_GROWTH,
    }


def report(result: dict) -> None:
    speed, rss = result["throughput"], result["memory"]
    print(
        f"{speed['audio_seconds']:.0f} s of episodes ({result['machine']['processor']}); "
        "x real time (audio-s/s), vs baseline"
    )
    for key, value in speed.items():
        if isinstance(value, dict):
            ratio = f"{value['vs_baseline']:6.2f}x" if "vs_baseline" in value else "  1.00x"
            print(f"  {key:40} {value['x_realtime']:8.0f}  {ratio}")
    for key, value in rss.items():
        if isinstance(value, dict):
            print(
                f"  {key:>8}: peak RSS {value['peak_rss_mib']:7.1f} MiB (resting "
                f"{value['resting_rss_mib']:.1f}), {value['x_realtime']:.0f}x real time"
            )
    print(f"  peak ratio longest/shortest: {rss['peak_ratio_longest_to_shortest']:.3f}")
    print(f"  targets: {result['target']}")


if __name__ == "__main__":
    sys.exit(main())
