"""Inference chunks/s of the exported ONNX model in onnxruntime against the torch model, same run.

Both ``python -m deepemocluster.predict`` backends (``--backend torch|onnx``) on a random-weight
checkpoint of the library default model, 2 threads, the same synthetic utterances, rounds
interleaved, best of R: **network** (ratings only) and **predict** (ratings and clusters: torch
makes a second forward pass and assigns with faiss, the graph does both in one). The baseline is
torch; ratios are onnxruntime / torch from the same run.

    python benchmarks/onnx_inference.py [--quick] [--utterances N] [--rounds R] [--out ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import _common as bench
import numpy as np
import torch

from deepemocluster.checkpoint import Checkpoint, ClusterSpace
from deepemocluster.clustering import Projection
from deepemocluster.config import load_config, to_yaml
from deepemocluster.data.features import PackedFeatures
from deepemocluster.data.labels import LabelScaler
from deepemocluster.model.build import build_model
from deepemocluster.serving.backend import TorchBackend
from deepemocluster.serving.export import export
from deepemocluster.serving.onnx_backend import OnnxBackend

THREADS = 2
RUNTIMES = ("torch", "onnxruntime")


def random_checkpoint(cfg, n_mels: int, seed: int = 0) -> Checkpoint:
    """A training checkpoint with random weights, statistics and centroids."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(cfg, n_mels).eval()
    k, d = cfg.cluster.k, cfg.model.head_dim
    n_attr = len(cfg.model.attributes)
    return Checkpoint(
        config_yaml=to_yaml(cfg),
        model=model.state_dict(),
        scaler=LabelScaler(np.full(n_attr, 4.0), np.ones(n_attr)),
        feature_mean=rng.normal(-5, 1, n_mels),
        feature_std=rng.uniform(1, 2, n_mels),
        clusters=ClusterSpace(
            Projection(None, None, True), rng.standard_normal((k, d)).astype(np.float32)
        ),
    )


def utterances(n: int, n_mels: int, seed: int = 0) -> PackedFeatures:
    """n utterances of 1.5-7 s (about 4 s on average) of log-mel-like noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(94, 438, n)
    frames = rng.normal(-5, 1.5, (int(lengths.sum()), n_mels)).astype(np.float32)
    return PackedFeatures("bench", frames, np.concatenate([[0], np.cumsum(lengths)]))


def measure(cfg, n_utt: int, rounds: int) -> tuple[dict, dict]:
    """Per task, each backend's best chunks/s and the ratio; and how far their outputs differ."""
    torch_backend = TorchBackend.from_checkpoint(random_checkpoint(cfg, cfg.features.n_mels))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_backend = OnnxBackend.load(export(torch_backend, Path(tmp) / "model.onnx"), THREADS)
        packed, rows = utterances(n_utt, cfg.features.n_mels), np.arange(n_utt)
        torch_ds, onnx_ds = torch_backend.dataset(packed, rows), onnx_backend.dataset(packed, rows)
        cases = {
            ("torch", "network"): lambda: torch_backend.run(torch_ds),
            ("onnxruntime", "network"): lambda: onnx_backend.run(onnx_ds),
            ("torch", "predict"): lambda: torch_backend.run(torch_ds, clusters=True),
            ("onnxruntime", "predict"): lambda: onnx_backend.run(onnx_ds, clusters=True),
        }
        seconds = bench.interleaved(cases, rounds)
        a, b = cases["torch", "predict"](), cases["onnxruntime", "predict"]()
    figures = {}
    for task in ("network", "predict"):
        rate = {r: torch_ds.n_total_chunks / min(seconds[r, task]) for r in RUNTIMES}
        figures[task] = {
            "torch_chunks_per_s": rate["torch"],
            "onnxruntime_chunks_per_s": rate["onnxruntime"],
            "ratio_onnxruntime_over_torch": rate["onnxruntime"] / rate["torch"],
            "all_seconds": {r: seconds[r, task] for r in RUNTIMES},
        }
    agreement = {
        "chunks": torch_ds.n_total_chunks,
        "max_abs_rating_difference": float(np.abs(a.ratings - b.ratings).max()),
        "same_chunk_clusters": bool((a.chunk_clusters == b.chunk_clusters).all()),
    }
    return figures, agreement


def print_figures(result: dict) -> None:
    for task in ("network", "predict"):
        f = result[task]
        print(
            f"{task:8s} torch {f['torch_chunks_per_s']:8.1f} chunks/s   onnxruntime "
            f"{f['onnxruntime_chunks_per_s']:8.1f} chunks/s   ratio "
            f"{f['ratio_onnxruntime_over_torch']:.2f}x"
        )
    kind = result["cpu_kind"]["torch_cpu_capability"]
    print(f"CPU: {result['machine']['processor']} (torch kernels {kind})")


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(
        __doc__, bench.RESULTS_DIR / "onnx_inference.json", "tiny encoder, 4 utterances, 1 round"
    )
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    n_utt, rounds = (4, 1) if args.quick else (args.utterances, args.rounds)
    load_before = bench.load_average()
    torch.set_num_threads(THREADS)
    cfg = load_config(overrides=["data.root=/unused", *(bench.TINY_RUN if args.quick else ())])
    figures, agreement = measure(cfg, n_utt, rounds)
    caps = bench.cpu_capabilities()
    result = {
        "benchmark": "onnx_inference",
        "mode": bench.mode(args.quick),
        "machine": bench.machine_info(("torch", "onnxruntime", "onnx", "numpy"), load_before),
        "cpu_kind": {k: caps[k] for k in ("torch_cpu_capability", "avx512_bf16", "amx_bf16")},
        "settings": {
            "threads": THREADS,
            "utterances": n_utt,
            "chunks": agreement.pop("chunks"),
            "rounds": rounds,
            "eval_batch_chunks": cfg.train.eval_batch_chunks,
            "n_mels": cfg.features.n_mels,
            "clusters": cfg.cluster.k,
        },
        "baseline": "torch",
        **agreement,
        **figures,
    }
    return bench.finish(result, args.out, print_figures)


if __name__ == "__main__":
    sys.exit(main())
