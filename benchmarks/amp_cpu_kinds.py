"""bfloat16 autocast against float32 on two CPU kinds, same run: what ``train.amp=auto`` decides.

Each CPU kind is a fresh process: this machine as it is, and the same machine limited to AVX2
kernels (``ATEN_CPU_CAPABILITY=avx2`` for torch's own kernels, ``ONEDNN_MAX_CPU_ISA=AVX2`` for
oneDNN's convolutions, ``MKL_ENABLE_INSTRUCTIONS=AVX2`` for MKL's matrix products,
``FAISS_OPT_LEVEL=avx2`` for k-means), which is how an AVX2-only CPU without AVX512-BF16/AMX
runs. The child
records what torch reports there and what ``hardware.resolve_amp("auto")`` chooses, then times
the reference encoder (128 mels x 62 frames, channels_last as training uses it, 2 threads),
float32 and bfloat16 interleaved, best of R:

- **inference**: ``inference.embed_chunks`` batches at ``train.eval_batch_chunks`` 32, 64 and 128;
- **training step**: forward + backward + Adam on 32 and 64 chunks, what one micro-batch of
  ``train.micro_batch_chunks`` costs.

The named baseline is float32 on the same CPU kind; ratios are bfloat16 / float32.

    python benchmarks/amp_cpu_kinds.py [--quick] [--rounds R] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import RESULTS_DIR, load_average, machine_info, run_child, write_results

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


def child(rounds: int, quick: bool) -> dict:
    """Measure in this process (its CPU kind was fixed by the environment at start-up)."""
    import numpy as np
    import torch

    from deepemocluster.config import load_config
    from deepemocluster.model import build_model
    from deepemocluster.runtime.hardware import detect, resolve_amp
    from deepemocluster.serving.inference import autocast

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    cfg = load_config(overrides=["data.root=/unused"])
    torch.manual_seed(0)
    model = build_model(cfg, cfg.features.n_mels).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    shape = (cfg.chunking.frames, cfg.features.n_mels)
    eval_batches, train_batches = ((8,), (8,)) if quick else (EVAL_BATCHES, TRAIN_BATCHES)

    def infer(batch: int, amp: bool) -> None:
        x = torch.randn(batch, *shape)
        model.eval()
        with torch.inference_mode(), autocast(cpu, amp):
            model.embed(x).float()

    def step(batch: int, amp: bool) -> None:
        x, y = torch.randn(batch, *shape), torch.randn(batch, 3)
        model.train()
        with autocast(cpu, amp):
            logits, ratings = model(x)
            loss = logits.float().logsumexp(1).mean() + (ratings.float() - y).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    cases = [("inference", b, amp) for b in eval_batches for amp in (False, True)]
    cases += [("training", b, amp) for b in train_batches for amp in (False, True)]
    fns = {"inference": infer, "training": step}
    best = {case: float("inf") for case in cases}
    for case in cases:  # warm-up: oneDNN primitives and the allocator
        fns[case[0]](case[1], case[2])
    for _ in range(rounds):
        for case in cases:
            start = time.perf_counter()
            fns[case[0]](case[1], case[2])
            best[case] = min(best[case], time.perf_counter() - start)
    caps = detect(cpu)
    use, why = resolve_amp("auto", cpu)
    figures: dict[str, dict] = {}
    for task, batch, amp in cases:
        entry = figures.setdefault(f"{task}_{batch}", {})
        entry["bf16_chunks_per_s" if amp else "fp32_chunks_per_s"] = (
            batch / best[(task, batch, amp)]
        )
    for entry in figures.values():
        entry["ratio_bf16_over_fp32"] = entry["bf16_chunks_per_s"] / entry["fp32_chunks_per_s"]
    return {
        "torch_cpu_capability": caps.cpu_capability,
        "avx512_bf16": caps.avx512_bf16,
        "amx_bf16": caps.amx_bf16,
        "onednn_max_isa": caps.onednn_max_isa,
        "auto_uses_bf16": use,
        "auto_reason": why,
        "figures": figures,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, batches of 8 chunks (tests)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "amp_cpu_kinds.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    if args.child:
        print(json.dumps(child(rounds, args.quick)))
        return 0
    load_before = load_average()
    flags = ["--child", "--rounds", str(rounds), *(["--quick"] if args.quick else [])]
    kinds = {name: run_child(Path(__file__), flags, env) for name, env in KINDS.items()}
    result = {
        "benchmark": "amp_cpu_kinds",
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(("torch", "numpy"), load_before),
        "settings": {"threads": 2, "rounds": rounds, "channels_last": True},
        "baseline": "float32 on the same CPU kind",
        "kinds": {name: {"env": KINDS[name], **k} for name, k in kinds.items()},
    }
    for name, k in kinds.items():
        print(f"{name}: torch {k['torch_cpu_capability']}, auto -> {k['auto_reason']}")
        for key, f in k["figures"].items():
            print(
                f"  {key:14s} fp32 {f['fp32_chunks_per_s']:7.1f}  bf16 {f['bf16_chunks_per_s']:7.1f}"
                f" chunks/s  bf16/fp32 {f['ratio_bf16_over_fp32']:.2f}x"
            )
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
