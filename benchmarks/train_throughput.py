"""Training throughput of the encoder (CPU by default, or a CUDA GPU), how close it gets to the
hardware, and where an epoch's time goes.

Training and inference chunks/s, default memory format against channels_last (and which
convolutions really run channels_last); FLOPs per chunk over a large matmul's FLOP/s; the OpenMP
wait policy in fresh processes; one real ``Trainer.run_epoch`` taken apart, joint and two-stage.
Methods: benchmarks/README.md.

    python benchmarks/train_throughput.py [--quick] [--rounds R] [--utterances N]
                                          [--device cpu|cuda] [--amp] [--out ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import _common as bench
import torch
from _encoder import (
    CL,
    amp_of,
    bench_config,
    device_of,
    flop_rate,
    inference_pass,
    make_model,
    model_flops,
    peak_kernels,
    sync_of,
    training_step,
)
from _epoch import profile_epoch, profiled_trainer
from _synthetic import synthetic_corpus
from omegaconf import DictConfig

from deepemocluster import clustering
from deepemocluster.training.data import build_data

RESULTS = bench.RESULTS_DIR / "train_throughput.json"
THREADS = 2
VARIANTS = {"default": False, "channels_last": True}  # name: model converted to channels_last


@dataclass(frozen=True)
class Setup:
    """What one run measures; ``FULL`` is the reference encoder, ``QUICK`` a toy for the tests."""

    overrides: tuple[str, ...]
    n_mels: int
    batch: int  # chunks per training step
    steps: int  # timed steps per variant and round
    rounds: int
    utterances: int  # synthetic corpus of the epoch profile
    matmul_n: int
    conv_batch: int


FULL = Setup((), 128, 128, 3, 3, 300, 2048, 32)
TOY_ENCODER = (
    "model.channels=[4,4,8,8,8,8,8]",
    "model.embed_dim=32",
    "model.head_dim=32",
    "chunking.n_chunks=3",
    "cluster.k=4",
    "train.batch_utterances=4",
    "train.eval_batch_chunks=64",
)
QUICK = Setup(TOY_ENCODER, 32, 16, 1, 1, 40, 256, 2)


def peak_dtype(cfg: DictConfig) -> torch.dtype:
    """The precision the convolutions run in: bfloat16 under ``train.amp``, else float32."""
    return torch.bfloat16 if amp_of(cfg) else torch.float32


def throughput(cfg: DictConfig, setup: Setup) -> dict:
    """chunks/s of training steps and inference batches, default vs channels_last, best of all
    timed calls; rounds interleave the variants (and the peaks) under the same load."""
    device, eval_batch = device_of(cfg), cfg.train.eval_batch_chunks
    peaks = peak_kernels(setup.matmul_n, setup.conv_batch, device, peak_dtype(cfg))
    fns = {name: fn for name, (fn, _) in peaks.items()}
    for v, channels_last in VARIANTS.items():
        model = make_model(cfg, setup.n_mels, channels_last)
        fns[f"train/{v}"] = training_step(model, cfg, setup.batch, setup.n_mels)
        fns[f"infer/{v}"] = inference_pass(model, cfg, setup.n_mels)
    calls = {key: 2 if key in peaks else setup.steps for key in fns}
    times = bench.interleaved(fns, setup.rounds, calls, sync_of(device))
    rates = {
        key: _rate(times[key], setup.batch if key.startswith("train") else eval_batch)
        for key in fns
        if key not in peaks
    }
    flops = model_flops(cfg, setup.n_mels)
    peak_flops = {name: flop_rate(times[name], flop) for name, (_, flop) in peaks.items()}
    return {
        "device": str(device),
        "amp": amp_of(cfg),
        "peak_dtype": str(peak_dtype(cfg)).removeprefix("torch."),
        "batch_chunks": setup.batch,
        "eval_batch_chunks": eval_batch,
        "rates": rates,
        "channels_last_speedup": {
            kind: rates[f"{kind}/channels_last"]["chunks_per_s"]
            / rates[f"{kind}/default"]["chunks_per_s"]
            for kind in ("train", "infer")
        },
        "inference_over_training": {
            v: rates[f"infer/{v}"]["chunks_per_s"] / rates[f"train/{v}"]["chunks_per_s"]
            for v in VARIANTS
        },
        "channels_last_check": channels_last_check(cfg, setup.n_mels),
        "flops": flops,
        "peak_flops": peak_flops,
        "utilisation": utilisation(rates, flops, peak_flops),
    }


def _rate(times: list[float], chunks: int) -> dict:
    return {
        "chunks_per_s": chunks / min(times),
        "median_chunks_per_s": chunks / sorted(times)[len(times) // 2],
        "seconds": times,
    }


def channels_last_check(cfg: DictConfig, n_mels: int) -> dict:
    """Which convolutions actually run channels_last: model converted or not, input converted
    explicitly (after the encoder's ``unsqueeze``) or not; and whether that explicit conversion
    changes the input's strides at all (it cannot for a 1-channel input: both layouts coincide)."""
    out = {}
    for model_cl in (False, True):
        for input_cl in (False, True):
            model = make_model(cfg, n_mels, model_cl)
            flags: list[bool] = []
            for block in model.encoder.blocks:
                block[0].register_forward_hook(
                    lambda _m, _i, o, flags=flags: flags.append(
                        o.is_contiguous(memory_format=CL) and not o.is_contiguous()
                    )
                )
            if input_cl:
                model.encoder.blocks[0].register_forward_pre_hook(
                    lambda _m, args: (args[0].contiguous(memory_format=CL),)
                )
            model(torch.zeros(2, cfg.chunking.frames, n_mels, device=device_of(cfg)))
            key = f"model_{'cl' if model_cl else 'default'}/input_{'cl' if input_cl else 'as_is'}"
            out[key] = {"convs_channels_last": sum(flags), "convs": len(flags)}
    x = torch.zeros(2, cfg.chunking.frames, n_mels).unsqueeze(1)
    out["explicit_input_conversion_changes_strides"] = (
        x.contiguous(memory_format=CL).stride() != x.stride()
    )
    return out


def utilisation(rates: dict, flops: dict, peak_flops: dict) -> dict:
    """Achieved GFLOP/s of each measured rate, and its fraction of the matmul and conv peaks."""
    out = {}
    for key, rate in rates.items():
        kind = "train" if key.startswith("train") else "forward"
        achieved = rate["chunks_per_s"] * flops[f"{kind}_flop_per_chunk"] / 1e9
        out[key] = {"gflop_per_s": achieved} | {
            f"fraction_of_{name}": achieved / peak["gflop_per_s"]
            for name, peak in peak_flops.items()
        }
    return out


def wait_policy_rates(cfg: DictConfig, setup: Setup) -> dict[str, float]:
    """The wait-policy child: best chunks/s of channels_last training steps and inference
    batches on 2 threads and on 1 (two steps of each kind per thread count)."""
    rates = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        model = make_model(cfg, setup.n_mels, True)
        fns = {
            "train": training_step(model, cfg, setup.batch, setup.n_mels),
            "infer": inference_pass(model, cfg, setup.n_mels),
        }
        chunks = {"train": setup.batch, "infer": cfg.train.eval_batch_chunks}
        times = bench.interleaved(fns, 1, min(setup.steps, 2), sync_of(device_of(cfg)))
        rates |= {f"{kind}_{threads}_threads": chunks[kind] / min(times[kind]) for kind in fns}
    return rates


def epoch_profiles(setup: Setup, workdir: Path) -> dict[str, dict]:
    """One profiled epoch per ``cluster.mode`` over the same synthetic corpus."""
    corpus = synthetic_corpus(workdir / "corpus", setup.utterances, setup.n_mels)
    out = {}
    for mode in ("joint", "two_stage"):
        cfg = bench_config([*setup.overrides, f"cluster.mode={mode}"])
        data = build_data(corpus, cfg)
        profile = profile_epoch(*profiled_trainer(cfg, data, device_of(cfg)))
        reads = sum(profile["chunks_read"].values())
        out[mode] = {
            "cluster_mode": mode,
            "utterances": len(corpus.manifest),
            "training_chunks": data.train.n_total_chunks,
            "dev_chunks": data.dev.n_total_chunks,
            "n_mels": setup.n_mels,
            "k": cfg.cluster.k,
            "batch_chunks": cfg.train.batch_utterances * cfg.chunking.n_chunks,
            "channels_last": cfg.train.channels_last,
            **profile,
            "read_chunks_per_s": reads / max(1e-9, sum(profile["read_s"].values())),
            "embedded_per_training_chunk": profile["chunks_read"].get("embed", 0)
            / data.train.n_total_chunks,
        }
    return out


def run(setup: Setup, workdir: Path, flags: list[str]) -> dict:
    """Every part in order; ``flags`` (``--quick``, ``--device``, ``--amp``) go to the probes."""
    torch.set_num_threads(THREADS)
    clustering.set_threads(THREADS)
    cfg = bench_config(setup.overrides)
    load_before, began = bench.load_average(), time.perf_counter()
    device = device_of(cfg)
    result = {
        "benchmark": "train_throughput",
        "config_overrides": list(setup.overrides),
        "setup": asdict(setup),
        "threads": THREADS,
        "model": {
            "channels": list(cfg.model.channels),
            "strides": list(cfg.model.strides),
            "frames": cfg.chunking.frames,
            "n_mels": setup.n_mels,
            "parameters": sum(p.numel() for p in make_model(cfg, setup.n_mels, False).parameters()),
        },
        "throughput": throughput(cfg, setup),
        "epoch": epoch_profiles(setup, workdir),
        "wait_policy": bench.per_wait_policy(Path(__file__), ["--probe", *flags]),
    }
    result["machine"] = {
        **bench.machine_info(("torch", "numpy", "faiss-cpu"), load_before),
        "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    result["wall_s"] = time.perf_counter() - began
    return result


def print_table(r: dict) -> None:
    t, m = r["throughput"], r["model"]
    print(
        f"encoder {m['channels']} on {m['frames']}x{m['n_mels']}, {m['parameters'] / 1e6:.2f} M "
        f"parameters; {r['threads']} threads; device {t['device']}, amp {t['amp']}; "
        f"CPU {r['machine']['processor']}; load {r['machine']['loadavg_before']}"
    )
    specs = ("<34", "10.1f", "9.1f", "9.1f", "11.1%")
    print(bench.header(specs, ("", "chunks/s", "median", "GFLOP/s", "of matmul")))
    for key, rate in t["rates"].items():
        u = t["utilisation"][key]
        kind, variant = key.split("/")
        label = f"{'train fwd+bwd' if kind == 'train' else 'inference fwd'} {variant}"
        values = (rate["chunks_per_s"], rate["median_chunks_per_s"], u["gflop_per_s"])
        print(bench.row(specs, (label, *values, u["fraction_of_matmul"])))
    sp, check = t["channels_last_speedup"], t["channels_last_check"]
    print(f"channels_last speed-up: train {sp['train']:.2f}x, inference {sp['infer']:.2f}x")
    convs = [
        f"{k} {v['convs_channels_last']}/{v['convs']}" for k, v in check.items() if k[0] == "m"
    ]
    print(
        f"convs running channels_last: {', '.join(convs)}; explicit input conversion changes "
        f"strides: {check['explicit_input_conversion_changes_strides']}"
    )
    f, p = t["flops"], t["peak_flops"]
    print(
        f"FLOP per chunk: forward {f['forward_flop_per_chunk'] / 1e6:.0f} M, training step "
        f"{f['train_flop_per_chunk'] / 1e6:.0f} M (torch counter: "
        f"{f['flop_counter']['forward_flop_per_chunk'] / 1e6:.0f} M / "
        f"{f['flop_counter']['train_flop_per_chunk'] / 1e6:.0f} M); peaks: matmul "
        f"{p['matmul']['gflop_per_s']:.0f} GFLOP/s, 3x3 conv {p['conv3x3']['gflop_per_s']:.0f} GFLOP/s"
    )
    best = max(t["utilisation"][f"train/{v}"]["fraction_of_matmul"] for v in VARIANTS)
    print(f"training throughput is within {1 / best:.1f}x of the matmul rate")
    for e in r["epoch"].values():
        print(
            f"epoch, cluster.mode={e['cluster_mode']}: {e['utterances']} utterances, "
            f"{e['training_chunks']} training chunks, K = {e['k']}, "
            f"{e['embedded_per_training_chunk']:.0f} embedding pass(es): {e['epoch_s']:.1f} s"
            f"{' (extrapolated)' if e['extrapolated'] else ''}"
        )
        for part, seconds in e["parts_s"].items():
            print(f"  {part:22}{seconds:9.2f} s{e['shares'][part]:8.1%}")
        print(f"  chunk reads: {e['read_chunks_per_s']:.0f} chunks/s")
    print("OpenMP wait policy (fresh processes, channels_last, best chunks/s):")
    for policy, rates in r["wait_policy"].items():
        print(
            f"  {policy:8} " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in rates.items())
        )


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, RESULTS, "a toy encoder, seconds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--utterances", type=int, default=None, help="epoch profile corpus size")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (train.amp=true)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    precision = (f"train.device={args.device}", f"train.amp={str(args.amp).lower()}")
    setup = replace(setup, overrides=(*setup.overrides, *precision))
    if args.probe:
        return bench.child_result(wait_policy_rates(bench_config(setup.overrides), setup))
    setup = replace(
        setup, rounds=args.rounds or setup.rounds, utterances=args.utterances or setup.utterances
    )
    flags = [*(["--quick"] if args.quick else []), "--device", args.device]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as workdir:
        result = run(setup, Path(workdir), flags + (["--amp"] if args.amp else []))
    result["mode"], result["command"] = bench.mode(args.quick), bench.command(argv)
    return bench.finish(result, args.out, print_table)


if __name__ == "__main__":
    sys.exit(main())
