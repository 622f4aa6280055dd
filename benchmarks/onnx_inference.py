"""Inference chunks/s of the exported ONNX model in onnxruntime against the torch model, same run.

The model is the library default (the reference encoder: 128 mels x 62 frames, 11 chunks per
utterance, K = 30 clusters), randomly initialised (speed does not depend on the weights), wrapped
in a checkpoint exactly as training writes one, then exported with ``deepemocluster.export``.
Both backends are the ones ``python -m deepemocluster.predict`` uses (``--backend torch|onnx``),
on 2 threads, over the same synthetic utterances of about 4 s, rounds interleaved, best of R
(``--quick``: the test suite's tiny encoder, whose export takes seconds, not the reference one):

- **network**: ratings only. torch runs ``inference.predict_utterances`` (one forward pass);
  onnxruntime runs the graph, which also normalises the features and computes the clusters.
- **predict**: ratings and clusters, as ``predict`` asks for them. torch makes a second forward
  pass for the embeddings and assigns with faiss; the graph does both in its one pass.

The named baseline is torch; the ratios are onnxruntime / torch from the same run.

    python benchmarks/onnx_inference.py [--quick] [--utterances N] [--rounds R] [--out ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS_DIR, TINY_RUN, load_average, machine_info, write_results

from deepemocluster.checkpoint import Checkpoint, ClusterSpace
from deepemocluster.clustering import Projection
from deepemocluster.config import load_config, to_yaml
from deepemocluster.data.features import PackedFeatures
from deepemocluster.data.labels import LabelScaler
from deepemocluster.model import build_model
from deepemocluster.runtime.hardware import detect
from deepemocluster.serving.export import export
from deepemocluster.serving.onnx_backend import OnnxBackend
from deepemocluster.serving.predict import TorchBackend

THREADS = 2


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny encoder, 4 utterances, 1 round (tests)"
    )
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "onnx_inference.json")
    args = parser.parse_args(argv)
    n_utt, rounds = (4, 1) if args.quick else (args.utterances, args.rounds)
    load_before = load_average()
    torch.set_num_threads(THREADS)

    cfg = load_config(overrides=["data.root=/unused", *(TINY_RUN if args.quick else ())])
    n_mels = cfg.features.n_mels
    torch_backend = TorchBackend.from_checkpoint(random_checkpoint(cfg, n_mels))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export(torch_backend, Path(tmp) / "model.onnx")
        onnx_backend = OnnxBackend.load(onnx_file, threads=THREADS)
        packed = utterances(n_utt, n_mels)
        rows = np.arange(n_utt)
        torch_ds, onnx_ds = torch_backend.dataset(packed, rows), onnx_backend.dataset(packed, rows)
        n_chunks = torch_ds.n_total_chunks

        cases = {
            ("torch", "network"): lambda: torch_backend.run(torch_ds),
            ("onnxruntime", "network"): lambda: onnx_backend.run(onnx_ds),
            ("torch", "predict"): lambda: torch_backend.run(torch_ds, clusters=True),
            ("onnxruntime", "predict"): lambda: onnx_backend.run(onnx_ds, clusters=True),
        }
        seconds: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        for fn in cases.values():  # warm-up: allocators, oneDNN primitives, ORT arenas
            fn()
        for _ in range(rounds):
            for case, fn in cases.items():
                start = time.perf_counter()
                fn()
                seconds[case].append(time.perf_counter() - start)
        a = torch_backend.run(torch_ds, clusters=True)
        b = onnx_backend.run(onnx_ds, clusters=True)

    figures = {}
    for task in ("network", "predict"):
        rate = {
            runtime: n_chunks / min(seconds[(runtime, task)])
            for runtime in ("torch", "onnxruntime")
        }
        figures[task] = {
            "torch_chunks_per_s": rate["torch"],
            "onnxruntime_chunks_per_s": rate["onnxruntime"],
            "ratio_onnxruntime_over_torch": rate["onnxruntime"] / rate["torch"],
            "all_seconds": {r: seconds[(r, task)] for r in ("torch", "onnxruntime")},
        }
    caps = detect(torch.device("cpu"))
    result = {
        "benchmark": "onnx_inference",
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(("torch", "onnxruntime", "onnx", "numpy"), load_before),
        "cpu_kind": {
            "torch_cpu_capability": caps.cpu_capability,
            "avx512_bf16": caps.avx512_bf16,
            "amx_bf16": caps.amx_bf16,
        },
        "settings": {
            "threads": THREADS,
            "utterances": n_utt,
            "chunks": n_chunks,
            "rounds": rounds,
            "eval_batch_chunks": cfg.train.eval_batch_chunks,
            "n_mels": n_mels,
            "clusters": cfg.cluster.k,
        },
        "baseline": "torch",
        "max_abs_rating_difference": float(np.abs(a.ratings - b.ratings).max()),
        "same_chunk_clusters": bool((a.chunk_clusters == b.chunk_clusters).all()),
        **figures,
    }
    for task in ("network", "predict"):
        f = figures[task]
        print(
            f"{task:8s} torch {f['torch_chunks_per_s']:8.1f} chunks/s   onnxruntime "
            f"{f['onnxruntime_chunks_per_s']:8.1f} chunks/s   ratio {f['ratio_onnxruntime_over_torch']:.2f}x"
        )
    print(f"CPU: {result['machine']['processor']} (torch kernels {caps.cpu_capability})")
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
