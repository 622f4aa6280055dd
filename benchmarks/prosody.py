"""Prosodic statistics (``data/prosody.py``): speed against the mel pass, and F0/voicing accuracy.

Speed, in audio-seconds per wall-second (= real-time factor), best of ``--reps`` rounds, every
pass once per round so that each round sees the same machine load, over the same demo files:

- ``mel``: ``FeatureSettings.compute`` (decode + log-mel: the feature store's per-file work);
- ``prosody``: ``load_audio`` + ``prosody_functionals.prosody`` (frame descriptors, the default chunk grid's
  functionals and the utterance's), what the feature pass would add per file;
- on decoded audio: ``mel_decoded`` (``mel_features``), ``prosody_decoded``, ``lld_decoded``
  (frame descriptors alone), ``librosa_yin`` (F0 alone, no voicing) and ``librosa_pyin`` (on the
  first ``--pyin-files`` files: it is slow, and its rate does not depend on which files);

each on 1 thread and on a pool of 2 threads (one BLAS thread each, as the feature store).
Target: ``prosody`` with 2 threads ≥ 50× real time.

Accuracy on the demo voice, whose F0 contour and syllables are rebuilt from each utterance's own
random stream (``data/demo_voice.py``): gross pitch error (> 20 % off) and mean error below it
(semitones) where truth and tracker are voiced, voiced share of syllable cores (recall), voiced
share of pauses (≥ 200 ms after a syllable: reverb tails excluded), for this module, ``librosa.yin``
with this module's voicing, and ``librosa.pyin``.

    python benchmarks/prosody.py [--quick] [--files N] [--reps R] [--out benchmarks/results/prosody.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import librosa
import numpy as np
from _common import RESULTS_DIR, load_average, machine_info, write_results
from threadpoolctl import threadpool_limits

from deepemocluster.config.schema import ChunkConfig, DemoConfig, FeatureConfig
from deepemocluster.data import demo_voice
from deepemocluster.data.audio import load_audio, mel_features
from deepemocluster.data.chunking import chunk_starts
from deepemocluster.data.demo import generate_demo_corpus
from deepemocluster.data.demo_plan import plan_corpus
from deepemocluster.data.features import FeatureSettings
from deepemocluster.data.prosody import ProsodySettings, frame_descriptors
from deepemocluster.data.prosody_functionals import prosody

RESULTS = RESULTS_DIR / "prosody.json"
TARGET_RTF, TARGET_THREADS = 50.0, 2
THREADS = (1, 2)
GROSS = 12 * np.log2(1.2)  # semitones: the usual 20 % gross-error bound


def run(n_files: int, reps: int, pyin_files: int, accuracy_files: int, workdir: Path) -> dict:
    load_before = load_average()
    cfg = DemoConfig(n_train=n_files, n_dev=0, n_test=0, n_unlabelled=0, n_speakers=12)
    generate_demo_corpus(workdir / "demo", cfg)
    plan = plan_corpus(cfg)
    paths = [str(workdir / "demo" / "Audios" / u.name) for u in plan]
    mel = FeatureSettings.from_config(asdict(FeatureConfig()))
    settings = ProsodySettings.from_features(mel)
    chunks = ChunkConfig()
    audios = [load_audio(p, mel.sample_rate, mel.n_fft) for p in paths]
    seconds = [a.size / mel.sample_rate for a in audios]

    def whole(audio: np.ndarray):
        starts = chunk_starts(1 + audio.size // settings.hop_length, chunks.n_chunks, chunks.frames)
        return prosody(audio, starts, chunks.frames, settings)

    yin = dict(fmin=settings.fmin, fmax=settings.fmax, sr=settings.sample_rate)
    yin |= dict(frame_length=settings.f0_frame_length, hop_length=settings.hop_length)
    passes: dict[str, tuple[Callable, list]] = {
        "mel": (mel.compute, paths),
        "prosody": (lambda p: whole(load_audio(p, mel.sample_rate, mel.n_fft)), paths),
        "mel_decoded": (lambda a: mel_features(a, **asdict(mel)), audios),
        "prosody_decoded": (whole, audios),
        "lld_decoded": (lambda a: frame_descriptors(a, settings), audios),
        "librosa_yin": (lambda a: librosa.yin(a, **yin), audios),
        "librosa_pyin": (lambda a: librosa.pyin(a, **yin), audios[:pyin_files]),
    }
    audio_s = {k: sum(seconds[: len(items)]) for k, (_, items) in passes.items()}
    times: dict[str, dict[int, list[float]]] = {k: {t: [] for t in THREADS} for k in passes}
    with threadpool_limits(1):
        for fn, items in passes.values():  # warm-up: lazy imports, numba, caches
            fn(items[0])
        for _ in range(reps):
            for name, (fn, items) in passes.items():
                for threads in THREADS:
                    times[name][threads].append(_timed(fn, items, threads))

    speed = {
        name: {
            str(t): {
                "seconds": min(ts),
                "all_seconds": ts,
                "rtf": audio_s[name] / min(ts),
            }
            for t, ts in by_threads.items()
        }
        for name, by_threads in times.items()
    }
    for by_threads in speed.values():
        for t, entry in by_threads.items():
            entry["ratio_to_mel"] = entry["rtf"] / speed["mel"][t]["rtf"]
    with threadpool_limits(1):
        accuracy = _accuracy(plan[:accuracy_files], audios[:accuracy_files], settings, yin)
    rtf = speed["prosody"][str(TARGET_THREADS)]["rtf"]
    return {
        "benchmark": "prosody",
        "machine": machine_info(("librosa", "numpy", "scipy", "torch"), load_before),
        "settings": asdict(settings),
        "chunking": {"n_chunks": chunks.n_chunks, "frames": chunks.frames},
        "corpus": {"source": "demo", "files": len(paths), "audio_seconds": sum(seconds)},
        "pyin_files": pyin_files,
        "repetitions": reps,
        "statistic": "best",
        "speed": speed,
        "accuracy": accuracy,
        "target": {
            "threads": TARGET_THREADS,
            "min_rtf": TARGET_RTF,
            "rtf": rtf,
            "met": bool(rtf >= TARGET_RTF),
        },
    }


def _timed(fn: Callable, items: list, threads: int) -> float:
    began = time.perf_counter()
    if threads == 1:
        for item in items:
            fn(item)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, items))
    return time.perf_counter() - began


def _truth(utt, seed: int, n_frames: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo voice's F0 (Hz) at each frame centre, syllable cores (the middle 60 % of each
    syllable) and pauses, from the same random stream ``demo_voice.render_speech`` draws."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, utt.index]))
    n = round(utt.seconds * demo_voice.SAMPLE_RATE)
    voice = demo_voice.prosody_for(utt.avd, utt.speaker, rng)
    syllables = demo_voice.plan_syllables(n, voice.syllable_rate, rng)
    phase = rng.uniform(0, 2 * np.pi)
    tremor = np.sin(2 * np.pi * voice.tremor_hz * np.arange(n) / demo_voice.SAMPLE_RATE + phase)
    f0 = demo_voice.f0_contour(n, syllables, voice, tremor, rng)
    core, pause = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    ms = demo_voice.SAMPLE_RATE // 1000
    for start, length in zip(syllables.start, syllables.length, strict=True):
        core[start + length // 5 : start + length - length // 5] = True
        pause[max(0, start - 50 * ms) : start + length + 200 * ms] = False
    at = np.minimum(np.arange(n_frames) * hop, n - 1)
    return f0[at], core[at], pause[at]


def _accuracy(plan, audios, settings: ProsodySettings, yin: dict) -> dict:
    totals: dict[str, np.ndarray] = {}
    for utt, audio in zip(plan, audios, strict=True):
        rows = frame_descriptors(audio, settings)
        ours_hz, ours_voiced = 27.5 * 2 ** (rows[:, 0] / 12), rows[:, 2] > 0
        pyin_hz, pyin_voiced, _ = librosa.pyin(audio, **yin)
        trackers = {
            "prosody": (ours_hz, ours_voiced),
            "librosa_yin": (librosa.yin(audio, **yin), ours_voiced),
            "librosa_pyin": (np.nan_to_num(pyin_hz, nan=1.0), pyin_voiced),
        }
        f0, core, pause = _truth(utt, DemoConfig().seed, len(rows), settings.hop_length)
        for name, (hz, voiced) in trackers.items():
            both = core & voiced
            error = np.abs(12 * np.log2(np.maximum(hz[both], 1.0) / f0[both]))
            fine = error[error <= GROSS]
            counts = [both.sum(), (error > GROSS).sum(), fine.sum(), core.sum(), pause.sum()]
            counts.append((pause & voiced).sum())
            totals[name] = totals.get(name, 0) + np.array(counts, dtype=np.float64)
    out = {}
    for name, (both, gross, fine, core, pause, false) in totals.items():
        out[name] = {
            "gross_pitch_error": gross / max(both, 1),
            "fine_error_st": fine / max(both - gross, 1),
            "voicing_recall": both / max(core, 1),
            "voiced_in_pauses": false / max(pause, 1),
            "frames": int(core),
        }
    out["utterances"] = len(plan)
    return out


def print_table(r: dict) -> None:
    c, m = r["corpus"], r["machine"]
    print(
        f"corpus: {c['files']} demo files, {c['audio_seconds']:.0f} s of audio (pyin: first "
        f"{r['pyin_files']}); {m['processor']}, {m['usable_cpus']} CPUs; best of {r['repetitions']}"
    )
    print(f"{'':18}" + "".join(f"{f'{t} thread RTF':>15}{'x mel':>7}" for t in THREADS))
    for name, by_threads in r["speed"].items():
        cells = "".join(f"{e['rtf']:15.1f}{e['ratio_to_mel']:7.3f}" for e in by_threads.values())
        print(f"{name:18}{cells}")
    a = r["accuracy"]
    print(f"accuracy on {a['utterances']} demo utterances (truth: the demo voice's own F0):")
    for name in ("prosody", "librosa_yin", "librosa_pyin"):
        e = a[name]
        print(
            f"  {name:13} GPE {e['gross_pitch_error']:.2%}  fine {e['fine_error_st']:.2f} st  "
            f"recall {e['voicing_recall']:.1%}  voiced in pauses {e['voiced_in_pauses']:.1%}"
        )
    t = r["target"]
    verdict = "met" if t["met"] else "MISSED"
    print(
        f"target: prosody with {t['threads']} threads >= {t['min_rtf']:.0f}x: {t['rtf']:.0f}x -> {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few files, one repetition")
    parser.add_argument("--files", type=int, default=None, help="corpus size (default 300)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    parser.add_argument("--pyin-files", type=int, default=None, help="pyin's files (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    n_files = args.files or (8 if args.quick else 300)
    reps = args.reps or (1 if args.quick else 3)
    pyin_files = min(n_files, args.pyin_files or (2 if args.quick else 20))
    accuracy_files = min(n_files, 4 if args.quick else 60)
    with tempfile.TemporaryDirectory(prefix="bench-prosody-") as workdir:
        result = run(n_files, reps, pyin_files, accuracy_files, Path(workdir))
    result["mode"] = "quick" if args.quick else "full"
    result["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    print_table(result)
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
