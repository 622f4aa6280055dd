"""bfloat16 autocast against float32 on two CPU kinds, same run: what ``train.amp=auto`` decides.

Each CPU kind is a fresh process: this machine as it is, and the same machine limited to AVX2
kernels by the environment in ``KINDS`` (read at start-up by torch, oneDNN, MKL and faiss), which
is how an AVX2-only CPU without AVX512-BF16/AMX runs. There the reference encoder (channels_last,
2 threads) is timed in both precisions, interleaved, best of R: inference batches of 32/64/128
chunks and training steps of 32/64. The baseline is float32 on the same CPU kind.

    python benchmarks/amp_cpu_kinds.py [--quick] [--rounds R] [--out ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import _common as bench

KINDS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "FAISS_OPT_LEVEL": "avx2",
    },
}
EVAL_BATCHES = (32, 64, 128)
TRAIN_BATCHES = (32, 64)


def running_kind() -> tuple[str, bool, str]:
    """Which of ``KINDS`` this process runs as (its environment was read at start-up by the
    libraries it limits), and what ``train.amp=auto`` resolves to here, with the reason."""
    import torch

    from deepemocluster.runtime.hardware import resolve_amp

    name = next(k for k, env in reversed(KINDS.items()) if env.items() <= os.environ.items())
    return (name, *resolve_amp("auto", torch.device("cpu")))


def child(rounds: int, quick: bool) -> dict:
    """Measure in this process (its CPU kind was fixed by the environment at start-up)."""
    import numpy as np
    import torch

    from deepemocluster.config import load_config
    from deepemocluster.model.build import build_model
    from deepemocluster.serving.inference import autocast

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    cfg = load_config(overrides=["data.root=/unused"])
    torch.manual_seed(0)
    model = build_model(cfg, cfg.features.n_mels).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    shape = (cfg.chunking.frames, cfg.features.n_mels)

    def infer(batch: int, amp: bool) -> None:
        x = torch.randn(batch, *shape)
        model.eval()
        with torch.inference_mode(), autocast(cpu, amp):
            model.embed(x).float()

    def step(batch: int, amp: bool) -> None:
        x, y = torch.randn(batch, *shape), torch.randn(batch, 3)
        model.train()
        with autocast(cpu, amp):
            logits, named = model(x)
            ratings = named["plain"]
            loss = logits.float().logsumexp(1).mean() + (ratings.float() - y).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    eval_batches, train_batches = ((8,), (8,)) if quick else (EVAL_BATCHES, TRAIN_BATCHES)
    cases = {("inference", b, amp): infer for b in eval_batches for amp in (False, True)}
    cases |= {("training", b, amp): step for b in train_batches for amp in (False, True)}
    fns = {case: (lambda fn=fn, b=case[1], amp=case[2]: fn(b, amp)) for case, fn in cases.items()}
    times = bench.interleaved(fns, rounds)
    figures: dict[str, dict] = {}
    for (task, batch, amp), t in times.items():
        entry = figures.setdefault(f"{task}_{batch}", {})
        entry["bf16_chunks_per_s" if amp else "fp32_chunks_per_s"] = batch / min(t)
    for entry in figures.values():
        entry["ratio_bf16_over_fp32"] = entry["bf16_chunks_per_s"] / entry["fp32_chunks_per_s"]
    _, use, why = running_kind()
    caps = {**bench.cpu_capabilities(), "auto_uses_bf16": use, "auto_reason": why}
    return {**caps, "figures": figures, "numpy": np.__version__}


def print_kinds(result: dict) -> None:
    print(f"CPU {result['machine']['processor']}")
    for name, k in result["kinds"].items():
        print(f"{name}: torch {k['torch_cpu_capability']}, auto -> {k['auto_reason']}")
        for key, f in k["figures"].items():
            print(
                f"  {key:14s} fp32 {f['fp32_chunks_per_s']:7.1f}  bf16 {f['bf16_chunks_per_s']:7.1f}"
                f" chunks/s  bf16/fp32 {f['ratio_bf16_over_fp32']:.2f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, bench.RESULTS_DIR / "amp_cpu_kinds.json", "1 round, 8 chunks")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    if args.child:
        return bench.child_result(child(rounds, args.quick))
    load_before = bench.load_average()
    flags = ["--child", "--rounds", str(rounds), *(["--quick"] if args.quick else [])]
    kinds = {name: bench.run_child(Path(__file__), flags, env) for name, env in KINDS.items()}
    result = {
        "benchmark": "amp_cpu_kinds",
        "mode": bench.mode(args.quick),
        "machine": bench.machine_info(("torch", "numpy"), load_before),
        "settings": {"threads": 2, "rounds": rounds, "channels_last": True},
        "baseline": "float32 on the same CPU kind",
        "kinds": {name: {"env": KINDS[name], **k} for name, k in kinds.items()},
    }
    return bench.finish(result, args.out, print_kinds)


if __name__ == "__main__":
    sys.exit(main())
