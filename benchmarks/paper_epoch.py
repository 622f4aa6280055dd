"""The acceptance check at the reference settings: one real epoch of ``configs/paper.yaml`` at
3,900 utterances on 2 CPU cores, against the reference implementation's recorded epoch scaled to
this CPU, beside two variants of the same settings (the whole batch unsplit; float32).

Each variant's epoch runs in a fresh process (its peak RSS is that epoch's alone) on a synthetic
128-mel store in MSP-Podcast v1.6's split proportions; a reference probe, timed in the same run,
scales the reference's recorded 1,244.5 s epoch to this CPU. ``--whole-run`` adds one whole
tracked run (one epoch, then the final stage: Test, final clustering, the MLflow model, the
report) in a fresh process: its final stage against its epoch, and its peak RSS. Methods and
targets: benchmarks/README.md.

    python benchmarks/paper_epoch.py [--cpu-kind native|avx2] [--variants paper,fp32]
                                     [--whole-run] [--utterances N] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import _common as bench
import _whole_run
import torch
from _encoder import (
    amp_of,
    flop_rate,
    inference_pass,
    make_model,
    model_flops,
    peak_kernels,
    training_step,
)
from _epoch import profile_epoch, profiled_trainer
from _paper_figures import (
    BASELINE,
    REFERENCE,
    TARGETS,
    print_table,
    reference_scaling,
    summarise,
    verdicts,
)
from _synthetic import open_synthetic_corpus, split_counts, utterance_frames, write_synthetic_store
from amp_cpu_kinds import KINDS, running_kind
from omegaconf import DictConfig
from train_throughput import TOY_ENCODER

from deepemocluster.config import load_config
from deepemocluster.data.manifest import UNLABELLED_SPLIT
from deepemocluster.training.data import build_data

RESULTS = bench.RESULTS_DIR / "paper_epoch.json"
PAPER = bench.ROOT / "configs" / "paper.yaml"
# MSP-Podcast v1.6 (docs/original_work.md); the corpus is split in these proportions
MSP_PODCAST_V16 = {"Train": 34280, UNLABELLED_SPLIT: 40000, "Development": 5958, "Test1": 10124}
MSP_SHARES = {s: c / sum(MSP_PODCAST_V16.values()) for s, c in MSP_PODCAST_V16.items()}
# name: overrides on top of paper.yaml; "paper" is the configuration under test
VARIANTS = {
    "paper": (),
    "unsplit": ("train.micro_batch_chunks=0", "train.eval_batch_chunks=512"),
    "fp32": ("train.amp=false", "train.micro_batch_chunks=32", "train.eval_batch_chunks=32"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Setup:
    """``FULL`` is the acceptance check; ``QUICK`` a toy encoder on a tiny store for the tests."""

    utterances: int
    n_mels: int
    overrides: tuple[str, ...]  # on top of paper.yaml
    matmul_n: int
    conv_batch: int
    peak_calls: int  # timed calls per peak kernel, before and after the epochs
    probe_rounds: int  # interleaved rounds of one training step and one embedding batch
    reference_batch: int  # chunks per training step of the reference probe


FULL = Setup(3900, 128, (), 2048, 32, 3, 3, 128)
# 72 chunks per batch: more than both variants' micro-batches, so the quick run splits too
QUICK_SETUP = Setup(48, 32, (*TOY_ENCODER, "train.batch_utterances=24"), 256, 2, 2, 1, 16)


def paper_config(setup: Setup, variant: str, extra: tuple[str, ...] | list[str] = ()) -> DictConfig:
    """paper.yaml on the CPU; on the synthetic store ``data.*`` and ``features.*`` are unused."""
    return load_config(PAPER, ["train.device=cpu", *setup.overrides, *VARIANTS[variant], *extra])


def child_epoch(setup: Setup, folder: Path, variant: str) -> dict:
    """One profiled ``Trainer.run_epoch`` with threads set as ``training.run.run`` sets them;
    memory is this process's own (it was started for this epoch alone)."""
    cfg = paper_config(setup, variant)
    bench.library_threads(cfg)
    load_before = bench.load_average()
    with bench.RssSampler() as rss:
        corpus = open_synthetic_corpus(folder, setup.utterances, setup.n_mels, shares=MSP_SHARES)
        data = build_data(corpus, cfg)
        trainer, timings = profiled_trainer(cfg, data, torch.device("cpu"))
        setup_rss = bench.rss_now_mib().get("VmRSS", 0.0)
        profile = profile_epoch(trainer, timings)
    return {
        "variant": variant,
        "amp": amp_of(cfg),
        "micro_batch_chunks": cfg.train.micro_batch_chunks,
        "eval_batch_chunks": cfg.train.eval_batch_chunks,
        "training_chunks": data.train.n_total_chunks,
        "labelled_chunks": len(data.labelled_chunks),
        "unlabelled_chunks": len(data.unlabelled_chunks),
        "dev_chunks": data.dev.n_total_chunks,
        "batch_chunks": cfg.train.batch_utterances * cfg.chunking.n_chunks,
        "threads": cfg.train.threads,
        "profile": profile,
        "memory_mib": {**rss.memory_mib(), "rss_before_epoch": setup_rss},
        "loadavg_before": load_before,
        "loadavg_after": bench.load_average(),
    }


# The hardware's rate and the reference probe


def precision_peaks(setup: Setup) -> dict[str, tuple[Callable[[], None], float]]:
    """Matmul and 3x3 convolution in both precisions, with the FLOPs of one call."""
    return {
        f"{name}/{kernel}": call
        for name, dtype in DTYPES.items()
        for kernel, call in peak_kernels(
            setup.matmul_n, setup.conv_batch, torch.device("cpu"), dtype
        ).items()
    }


def reference_calls(setup: Setup) -> dict[str, tuple[Callable[[], None], int]]:
    """The reference probe: one unsplit float32 training step of the encoder as the reference
    code builds it (default memory format) and channels_last, with the chunks of one call."""
    cfg = paper_config(setup, "paper", ("train.amp=false", "train.micro_batch_chunks=0"))
    batch = setup.reference_batch
    return {
        name: (training_step(make_model(cfg, setup.n_mels, cl), cfg, batch, setup.n_mels), batch)
        for name, cl in (("default", False), ("channels_last", True))
    }


def variant_probe(setup: Setup, variants: list[str]) -> dict:
    """One training step at the paper's batch and one embedding batch of every variant,
    interleaved in one process so all see the same load (the epochs run one after the other)."""
    fns, chunks = {}, {}
    for name in variants:
        cfg = paper_config(setup, name)
        model = make_model(cfg, setup.n_mels, cfg.train.channels_last)
        chunks[f"train/{name}"] = cfg.train.batch_utterances * cfg.chunking.n_chunks
        fns[f"train/{name}"] = training_step(model, cfg, chunks[f"train/{name}"], setup.n_mels)
        chunks[f"infer/{name}"] = cfg.train.eval_batch_chunks
        fns[f"infer/{name}"] = inference_pass(model, cfg, setup.n_mels)
    times = bench.interleaved(fns, setup.probe_rounds)
    rates = {key: chunks[key] / min(times[key]) for key in fns}
    out = {"chunks_per_s": rates, "seconds": times}
    if BASELINE in variants:
        out[f"over_{BASELINE}"] = {
            name: {k: rates[f"{k}/{name}"] / rates[f"{k}/{BASELINE}"] for k in ("train", "infer")}
            for name in variants
        }
    return out


def cpu_kind() -> dict:
    """The CPU kind this process runs as (``amp_cpu_kinds.KINDS``), what torch dispatches, and
    what ``train.amp=auto`` resolves to."""
    name, uses_bf16, reason = running_kind()
    return {
        "name": name,
        "env": KINDS[name],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "auto_uses_bf16": uses_bf16,
        "auto_reason": reason,
    }


# The run


def run(setup: Setup, workdir: Path, quick: bool, variants: list[str], whole: bool) -> dict:
    """Store, peaks and reference probe, one epoch per variant (fresh processes, one at a time),
    the interleaved variant probe, peaks and reference probe again, the whole run, figures."""
    flags = [*(["--quick"] if quick else []), "--utterances", str(setup.utterances)]
    load_before, began = bench.load_average(), time.perf_counter()
    cfg = paper_config(setup, "paper")
    torch.set_num_threads(cfg.train.threads)
    write_synthetic_store(workdir, setup.utterances, setup.n_mels)
    kernels, reference = precision_peaks(setup), reference_calls(setup)
    calls = {**kernels, **reference}
    times = bench.interleaved({k: fn for k, (fn, _) in calls.items()}, setup.peak_calls)
    child = ["--child", str(workdir), *flags, "--variant"]
    epochs = {k: bench.run_child(Path(__file__), [*child, k]) for k in variants}
    probe = variant_probe(setup, variants)
    again = bench.interleaved({k: fn for k, (fn, _) in calls.items()}, setup.peak_calls)
    times = {k: times[k] + again[k] for k in calls}
    peaks = {name: flop_rate(times[name], flop) for name, (_, flop) in kernels.items()}
    scaling = reference_scaling({k: times[k] for k in reference}, setup.reference_batch)
    flops = model_flops(cfg, setup.n_mels)
    flops["train_flop_per_chunk_3x"] = 3 * flops["forward_flop_per_chunk"]
    baseline_s = epochs[BASELINE]["profile"]["epoch_s"] if BASELINE in epochs else None
    summary = {
        k: summarise(e, flops, peaks, scaling["reference_epoch_s"], baseline_s)
        for k, e in epochs.items()
    }
    frames = utterance_frames(setup.utterances)
    result = {
        "benchmark": "paper_epoch",
        "mode": bench.mode(quick),
        "cpu_kind": cpu_kind(),
        "config": str(PAPER.relative_to(bench.ROOT)),
        "config_overrides": list(setup.overrides),
        "variants": {k: list(VARIANTS[k]) for k in variants},
        "setup": asdict(setup),
        "reference": REFERENCE,
        "reference_probe": scaling,
        "targets": TARGETS,
        "corpus": {
            "splits": split_counts(setup.utterances, MSP_SHARES),
            "proportions_of_msp_podcast_v16": MSP_PODCAST_V16,
            "n_mels": setup.n_mels,
            "mean_utterance_s": float(frames.mean() * 256 / 16000),
            "store_mib": float(frames.sum() * setup.n_mels * 4 / 2**20),
        },
        "flops": flops,
        "peak_flops": peaks,
        "epochs": epochs,
        "variant_probe": probe,
        "summary": summary,
        "verdicts": verdicts(summary),
    }
    if whole:  # the corpus made first, so the run's process finds it as a second run would
        prepare_s = _whole_run.prepare(whole_run_config(setup, workdir))
        whole_run = bench.run_child(Path(__file__), ["--run-child", str(workdir), *flags])
        result["whole_run"] = {**whole_run, "prepare_s": prepare_s}
    result["machine"] = {
        **bench.machine_info(("torch", "numpy", "faiss-cpu"), load_before),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    result["wall_s"] = time.perf_counter() - began
    return result


def whole_run_config(setup: Setup, workdir: Path) -> DictConfig:
    """``paper`` on a demo corpus in the epochs' split sizes, its files all in ``workdir``."""
    counts = split_counts(setup.utterances, MSP_SHARES)
    return paper_config(setup, "paper", _whole_run.overrides(workdir / "run", counts, setup.n_mels))


def variant_list(text: str) -> list[str]:
    """``--variants``: names from ``VARIANTS``, comma-separated, in ``VARIANTS``' order."""
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(VARIANTS)}")
    return [n for n in VARIANTS if n in names]


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, None, "a toy run for the tests (seconds)")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--cpu-kind", choices=KINDS, default="native", help="run as this CPU kind")
    parser.add_argument(
        "--variants", type=variant_list, default=list(VARIANTS), help="comma-separated subset"
    )
    parser.add_argument("--whole-run", action="store_true", help="also a whole tracked run")
    parser.add_argument("--utterances", type=int, default=None, help="corpus size (default 3900)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a store folder
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--run-child", type=Path, help=argparse.SUPPRESS)  # the work folder
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    env = KINDS[args.cpu_kind]
    if not env.items() <= os.environ.items():  # torch read the environment at import: restart
        return subprocess.run(
            [sys.executable, __file__, *argv], env={**os.environ, **env}
        ).returncode
    setup = QUICK_SETUP if args.quick else FULL
    if args.utterances:
        setup = replace(setup, utterances=args.utterances)
    if args.child is not None:
        return bench.child_result(child_epoch(setup, args.child, args.variant))
    if args.run_child is not None:
        return bench.child_result(_whole_run.child(whole_run_config(setup, args.run_child)))
    if args.quick and args.out is None:
        parser.error("--quick needs --out (it must not replace the recorded results)")
    with tempfile.TemporaryDirectory(prefix="bench-paper-") as workdir:
        result = run(setup, Path(workdir), args.quick, args.variants, args.whole_run)
    result["command"] = bench.command(argv)
    return bench.finish(result, args.out or RESULTS, print_table)


if __name__ == "__main__":
    sys.exit(main())
