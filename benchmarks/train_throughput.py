"""Training throughput of the encoder (CPU by default, or a CUDA GPU), how close it gets to the
hardware, and where an epoch's time goes.

1. Forward+backward chunks/s (one training step as ``Trainer.train_pass`` takes it: cross-entropy on the
   cluster logits + (1 - CCC), Adam) at a batch of 128 chunks, default memory format against
   ``model.to(memory_format=torch.channels_last)`` (what ``Trainer`` does with
   ``train.channels_last=true``), rounds interleaved so both see the same machine load. A check
   records whether every convolution output really is channels_last (the 1-channel input is
   ambiguous), and whether converting the input explicitly would change anything.
2. Inference-only chunks/s: ``model.embed`` under ``torch.inference_mode`` at
   ``train.eval_batch_chunks``, the embedding pass before each clustering.
3. An MFU-style estimate (nanoGPT's ``estimate_mfu``): FLOPs per chunk counted analytically from
   the convolution and linear shapes (cross-checked with ``torch.utils.flop_counter``), times the
   measured chunks/s, over the FLOP/s of a large float32 matmul (and of a large 3x3 convolution)
   on the same threads in the same run. With ``--amp`` (bfloat16 autocast, ``train.amp``) the
   peaks are bfloat16 too: the rate the hardware offers the precision the convolutions run in.
4. The OpenMP wait policy: training and inference chunks/s (channels_last) in fresh processes,
   default against ``OMP_WAIT_POLICY=PASSIVE`` (read once, at start-up), 2 threads and 1.
5. Epoch time shares: the real ``Trainer.run_epoch`` on a synthetic packed store, timed through
   the trainer's hooks (the embedding pass, k-means, the training pass, the Development pass)
   and a timed ``ChunkDataset`` for the chunk reads inside each.

    python benchmarks/train_throughput.py [--quick] [--rounds R] [--utterances N]
                                          [--device cpu|cuda] [--amp] [--out ...]

The model is the library default (the reference encoder: 128 mels x 62 frames, channels
32,32,64,64,128,128,128, joint clustering with K = 30, 11 chunks per utterance). ``--device`` and
``--amp`` become the config overrides ``train.device`` and ``train.amp``, so every part (steps,
peaks, epoch profile) runs on that device in that precision; on CUDA each timed call ends with
``torch.cuda.synchronize()`` (kernels are asynchronous), and the OpenMP probe then only measures
the host side.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import (
    RESULTS_DIR,
    load_average,
    machine_info,
    run_child,
    synthetic_corpus,
    write_results,
)
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from deepemocluster import clustering
from deepemocluster.config import load_config
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.losses import ccc_loss
from deepemocluster.model import DeepEmoCluster, build_model
from deepemocluster.runtime.hardware import resolve_amp
from deepemocluster.serving.inference import autocast
from deepemocluster.training.data import TrainingData, build_data
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.microbatch import SplitStep
from deepemocluster.training.trainer import Trainer

RESULTS = RESULTS_DIR / "train_throughput.json"
THREADS = 2
CL = torch.channels_last
CPU = torch.device("cpu")


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
QUICK = Setup(
    (
        "model.channels=[4,4,8,8,8,8,8]",
        "model.embed_dim=32",
        "model.head_dim=32",
        "chunking.n_chunks=3",
        "cluster.k=4",
        "train.batch_utterances=4",
        "train.eval_batch_chunks=64",
    ),
    32,
    16,
    1,
    1,
    40,
    256,
    2,
)


def bench_config(overrides: tuple[str, ...] | list[str] = ()) -> DictConfig:
    """The library defaults (+ overrides); the corpus is synthetic, so ``data.root`` is unused."""
    return load_config(None, ["data.root=unused", "train.device=cpu", *overrides])


def set_threads(n: int = THREADS) -> None:
    torch.set_num_threads(n)
    clustering.set_threads(n)


# --------------------------------------------------------------------------------------------
# 1-2. Throughput


def amp_of(cfg: DictConfig) -> bool:
    """``train.amp`` (true | false | auto) as the trainer resolves it on this run's device."""
    return resolve_amp(cfg.train.amp, device_of(cfg))[0]


def device_of(cfg: DictConfig) -> torch.device:
    """The benchmark's device: ``train.device`` (``bench_config`` sets cpu unless overridden)."""
    return torch.device(cfg.train.device)


def make_model(cfg: DictConfig, n_mels: int, channels_last: bool) -> DeepEmoCluster:
    torch.manual_seed(0)
    model = build_model(cfg, n_mels).to(device_of(cfg))
    return model.to(memory_format=CL) if channels_last else model


def training_step(model: DeepEmoCluster, cfg: DictConfig, batch: int, n_mels: int) -> Callable:
    """One step on a fixed random batch, as ``Trainer.train_pass`` takes it."""
    device = device_of(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.chunking.frames, n_mels, generator=g).to(device)
    labels = torch.randint(0, cfg.cluster.k, (batch,), generator=g).to(device)
    targets = torch.randn(batch, len(cfg.model.attributes), generator=g).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.main.lr)
    split = SplitStep(model, model, cfg.train.micro_batch_chunks, device, amp_of(cfg))

    def step() -> None:
        model.train()
        aux, pred = split.forward(x)
        loss = F.cross_entropy(aux, labels) + ccc_loss(pred, targets)
        optimizer.zero_grad(set_to_none=True)
        split.backward(loss)
        optimizer.step()

    return step


def inference_pass(model: DeepEmoCluster, cfg: DictConfig, n_mels: int) -> Callable:
    """One ``embed`` batch of ``train.eval_batch_chunks`` chunks, as ``embed_chunks`` runs it."""
    device = device_of(cfg)
    x = torch.randn(cfg.train.eval_batch_chunks, cfg.chunking.frames, n_mels, device=device)

    @torch.inference_mode()
    def forward() -> None:
        model.eval()
        with autocast(device, amp_of(cfg)):
            model.embed(x)

    return forward


def seconds_per_call(fn: Callable[[], None], calls: int, device: torch.device = CPU) -> list[float]:
    """Wall seconds of each call; on CUDA only once the queued kernels have finished."""
    times = []
    for _ in range(calls):
        _synchronize(device)
        began = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - began)
    return times


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(cfg: DictConfig, setup: Setup) -> dict:
    """chunks/s of training steps and inference batches, default vs channels_last, best of all
    timed calls; rounds interleave the variants (and the matmul peak) under the same load."""
    variants = {"default": False, "channels_last": True}
    models = {v: make_model(cfg, setup.n_mels, cl) for v, cl in variants.items()}
    train = {v: training_step(m, cfg, setup.batch, setup.n_mels) for v, m in models.items()}
    infer = {v: inference_pass(m, cfg, setup.n_mels) for v, m in models.items()}
    device = device_of(cfg)
    peak = peak_benchmarks(setup, device, peak_dtype(cfg))
    for fns in (train, infer):  # warm-up: allocator, oneDNN primitive caches
        for fn in fns.values():
            fn()
    times = {f"{kind}/{v}": [] for kind in ("train", "infer") for v in variants}
    peaks: dict[str, list[float]] = {name: [] for name in peak}
    for _ in range(setup.rounds):
        for name, fn in peak.items():
            peaks[name] += seconds_per_call(fn, 2, device)
        for v in variants:
            times[f"train/{v}"] += seconds_per_call(train[v], setup.steps, device)
            times[f"infer/{v}"] += seconds_per_call(infer[v], setup.steps, device)
    eval_batch = cfg.train.eval_batch_chunks
    rates = {
        key: _rate(t, setup.batch if key.startswith("train") else eval_batch)
        for key, t in times.items()
    }
    flops = model_flops(cfg, setup.n_mels)
    peak_flops = {
        "matmul": flop_rate(peaks["matmul"], 2 * setup.matmul_n**3),
        "conv3x3": flop_rate(peaks["conv3x3"], 2 * conv_peak_macs(setup.conv_batch)),
    }
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
            for v in variants
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


def flop_rate(times: list[float], flop: float) -> dict:
    return {"gflop_per_s": flop / min(times) / 1e9, "seconds": times}


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
                    lambda _m, _i, o, flags=flags: flags.append(_strictly_channels_last(o))
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


def _strictly_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


# --------------------------------------------------------------------------------------------
# 3. FLOPs and the hardware's achievable rate


def model_flops(cfg: DictConfig, n_mels: int) -> dict:
    """Per-chunk FLOPs (2 per multiply-add) of the convolutions and linear layers; BatchNorm,
    ReLU, the loss and the optimiser are left out (elementwise, a few % at most). A training step
    is the forward, the weight gradients, and the input gradients of every layer but the first
    (its input needs none)."""
    m, k = cfg.model, cfg.cluster.k
    convs = conv_macs(cfg.chunking.frames, n_mels, m.channels, m.strides)
    flat = convs[-1]["out_elements"]
    linear = (
        flat * m.embed_dim  # encoder dense
        + m.embed_dim * m.head_dim
        + m.head_dim * k  # cluster head
        + m.embed_dim * m.head_dim
        + m.head_dim * len(m.attributes)  # regressor
    )
    conv_total = sum(c["macs"] for c in convs)
    forward = 2 * (conv_total + linear)
    train = 3 * forward - 2 * convs[0]["macs"]
    return {
        "conv_macs": [c["macs"] for c in convs],
        "linear_macs": linear,
        "forward_flop_per_chunk": forward,
        "train_flop_per_chunk": train,
        "flop_counter": flop_counter(cfg, n_mels),
    }


def conv_macs(frames: int, n_mels: int, channels, strides) -> list[dict]:
    """3x3 convolutions, padding 1: an output element costs 9 x in_channels multiply-adds."""
    h, w, c_in, out = frames, n_mels, 1, []
    for c_out, s in zip(channels, strides, strict=True):
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
        out.append({"out_shape": [c_out, h, w], "out_elements": c_out * h * w})
        out[-1]["macs"] = h * w * c_out * c_in * 9
        c_in = c_out
    return out


def flop_counter(cfg: DictConfig, n_mels: int) -> dict:
    """torch's own count for one chunk (forward; forward + backward), as a cross-check."""
    model = make_model(cfg, n_mels, False)
    x = torch.zeros(1, cfg.chunking.frames, n_mels, device=device_of(cfg))
    model.eval()
    with FlopCounterMode(display=False) as fwd:
        model(x)
    model.train()
    x2 = torch.zeros(2, *x.shape[1:], device=x.device)  # batch 2: BatchNorm needs > 1 in training
    with FlopCounterMode(display=False) as both:
        aux, pred = model(x2)
        (aux.sum() + pred.sum()).backward()
    return {
        "forward_flop_per_chunk": fwd.get_total_flops(),
        "train_flop_per_chunk": both.get_total_flops() / 2,
    }


def peak_dtype(cfg: DictConfig) -> torch.dtype:
    """The precision the convolutions run in: bfloat16 under ``train.amp``, else float32."""
    return torch.bfloat16 if amp_of(cfg) else torch.float32


def peak_benchmarks(
    setup: Setup, device: torch.device = CPU, dtype: torch.dtype = torch.float32
) -> dict[str, Callable[[], None]]:
    """A large matmul and a large channels_last 3x3 convolution: what the cores deliver."""
    return {
        "matmul": matmul_call(setup.matmul_n, device, dtype),
        "conv3x3": conv_call(setup.conv_batch, device, dtype),
    }


def matmul_call(n: int, device: torch.device, dtype: torch.dtype) -> Callable[[], None]:
    """An n x n by n x n product (2 n^3 FLOP), the usual yardstick of a machine's peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b)


def conv_call(batch: int, device: torch.device, dtype: torch.dtype) -> Callable[[], None]:
    """A 64 -> 64 channel 3x3 convolution on batch x 64 x 64 inputs (``conv_peak_macs``)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    conv = conv.to(device=device, dtype=dtype, memory_format=CL)
    x = torch.randn(batch, 64, 64, 64, device=device, dtype=dtype).contiguous(memory_format=CL)

    @torch.inference_mode()
    def call() -> None:
        conv(x)

    return call


def conv_peak_macs(batch: int) -> int:
    return batch * 64 * 64 * 64 * 64 * 9


def utilisation(rates: dict, flops: dict, peak_flops: dict) -> dict:
    """Achieved GFLOP/s of each measured rate, and its fraction of the matmul and conv peaks."""
    out = {}
    for key, rate in rates.items():
        per_chunk = flops[
            "train_flop_per_chunk" if key.startswith("train") else "forward_flop_per_chunk"
        ]
        achieved = rate["chunks_per_s"] * per_chunk / 1e9
        out[key] = {
            "gflop_per_s": achieved,
            **{
                f"fraction_of_{name}": achieved / peak["gflop_per_s"]
                for name, peak in peak_flops.items()
            },
        }
    return out


# --------------------------------------------------------------------------------------------
# 4. OpenMP wait policy


def channels_last_rates(cfg: DictConfig, setup: Setup, threads: int) -> dict[str, float]:
    """Best chunks/s of training steps and inference batches, channels_last, on ``threads``."""
    torch.set_num_threads(threads)
    model = make_model(cfg, setup.n_mels, True)
    fns = {
        "train": training_step(model, cfg, setup.batch, setup.n_mels),
        "infer": inference_pass(model, cfg, setup.n_mels),
    }
    chunks = {"train": setup.batch, "infer": cfg.train.eval_batch_chunks}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(setup.rounds):
        for kind, fn in fns.items():
            times[kind] += seconds_per_call(fn, setup.steps, device_of(cfg))
    return {kind: chunks[kind] / min(t) for kind, t in times.items()}


def wait_policy_probe(args: list[str]) -> dict:
    """``channels_last_rates`` on 2 and 1 threads in fresh processes, per OpenMP wait policy;
    ``args`` are the parent's mode and device flags."""
    out = {}
    for policy in ("default", "PASSIVE"):
        env = {} if policy == "default" else {"OMP_WAIT_POLICY": policy}
        out[policy] = run_child(Path(__file__), ["--probe", *args], env)
    return out


# --------------------------------------------------------------------------------------------
# 5. Where an epoch's time goes


class EpochProfile(Hooks):
    """Where one epoch's time goes, from what the trainer reports: its phases (``embed``,
    ``kmeans``, ``train``, ``evaluate``), the end of each training step, and (through
    ``TimedChunks``) every chunk read, attributed afterwards to the phase it fell in."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []  # (name, start, end)
        self.step_ends: list[float] = []
        self.reads: list[tuple[float, float, int]] = []  # (start, seconds, chunks)

    def on_phase(self, name: str, seconds: float) -> None:
        end = time.perf_counter()
        self.phases.append((PHASE_NAMES.get(name, name), end - seconds, end))

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        self.step_ends.append(time.perf_counter())

    def seconds(self) -> dict[str, float]:
        """Seconds per phase, and ``read/<phase>`` for the reads inside it."""
        out: dict[str, float] = {}
        for name, start, end in self.phases:
            out[name] = out.get(name, 0.0) + end - start
        for name, read_s, _ in self._attributed_reads():
            out[f"read/{name}"] = out.get(f"read/{name}", 0.0) + read_s
        return out

    def chunks_read(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, _, chunks in self._attributed_reads():
            out[name] = out.get(name, 0) + chunks
        return out

    def _attributed_reads(self) -> Iterator[tuple[str, float, int]]:
        for began, read_s, chunks in self.reads:  # reads outside every phase (a warm-up) not
            for name, start, end in self.phases:
                if start <= began <= end:
                    yield name, read_s, chunks
                    break


# the trainer's phase names → this benchmark's (and its JSON's) names
PHASE_NAMES = {"evaluate": "dev"}


class TimedChunks(ChunkDataset):
    """A ChunkDataset whose ``chunk_batch`` reads are timed into an ``EpochProfile``."""

    profile: EpochProfile

    @classmethod
    def wrap(cls, ds: ChunkDataset, profile: EpochProfile) -> TimedChunks:
        timed = copy.copy(ds)
        timed.__class__ = cls
        timed.profile = profile
        return timed

    def chunk_batch(self, ids):
        began = time.perf_counter()
        out = super().chunk_batch(ids)
        self.profile.reads.append((began, time.perf_counter() - began, len(ids)))
        return out


def profiled_trainer(
    cfg: DictConfig, data: TrainingData, device: torch.device
) -> tuple[Trainer, EpochProfile]:
    """A trainer whose epochs ``profile_epoch`` can take apart."""
    profile = EpochProfile()
    timed = replace(
        data, train=TimedChunks.wrap(data.train, profile), dev=TimedChunks.wrap(data.dev, profile)
    )
    return Trainer(cfg, timed, device, hooks=[profile]), profile


def profile_epoch(trainer: Trainer, profile: EpochProfile) -> dict:
    """Seconds of one ``trainer.run_epoch()`` by part. With ``train.max_steps_per_pass``, the
    training pass (its steps and reads) is extrapolated from the steps run to the full epoch and
    flagged so."""
    began = time.perf_counter()
    metrics = trainer.run_epoch()
    measured = time.perf_counter() - began
    s = profile.seconds()
    batches_run = len(profile.step_ends)
    batches_full = sum(-(-len(ids) // trainer.batch_chunks) for _, ids in trainer.cluster_stages())
    missing = batches_full - batches_run
    step_s = steady_step_seconds(profile.step_ends, s.get("train", 0.0))
    train_s = s.get("train", 0.0) + step_s * missing  # the full training pass, reads included
    read_train_s = s.get("read/train", 0.0) * batches_full / max(1, batches_run)
    parts = {
        "data_loading": sum(v for k, v in s.items() if k.startswith("read/") and k != "read/train")
        + read_train_s,
        "embedding_forward": s.get("embed", 0.0) - s.get("read/embed", 0.0),
        "kmeans": s.get("kmeans", 0.0),
        "training_steps": train_s - read_train_s,
        "dev_forward": s.get("dev", 0.0) - s.get("read/dev", 0.0),
    }
    phases = sum(s.get(k, 0.0) for k in ("embed", "kmeans", "train", "dev"))
    parts["other"] = max(0.0, measured - phases)
    total = sum(parts.values())
    return {
        "epoch_s": total,
        "measured_s": measured,
        "extrapolated": missing > 0,
        "train_step_s": step_s,
        "batches_run": batches_run,
        "batches_full": batches_full,
        "parts_s": parts,
        "shares": {k: v / total for k, v in parts.items()},
        "read_s": {k.removeprefix("read/"): v for k, v in s.items() if k.startswith("read/")},
        "chunks_read": profile.chunks_read(),
        "cluster_empty": metrics.get("cluster/empty"),
    }


def steady_step_seconds(step_ends: list[float], train_s: float) -> float:
    """Median interval between the ends of consecutive steps (a read + a step), which leaves
    out the first step's share of the DataLoader's start; the plain mean when too few ran."""
    gaps = sorted(b - a for a, b in zip(step_ends, step_ends[1:], strict=False))
    if len(gaps) >= 2:
        return gaps[len(gaps) // 2]
    return train_s / max(1, len(step_ends))


def epoch_profiles(setup: Setup, workdir: Path) -> dict[str, dict]:
    """One profiled epoch per ``cluster.mode`` over the same synthetic corpus."""
    corpus = synthetic_corpus(workdir / "corpus", setup.utterances, setup.n_mels)
    return {
        mode: epoch_profile(
            bench_config([*setup.overrides, f"cluster.mode={mode}"]), corpus, workdir
        )
        for mode in ("joint", "two_stage")
    }


def epoch_profile(cfg: DictConfig, corpus, workdir: Path) -> dict:
    data = build_data(corpus, cfg)
    profile = profile_epoch(*profiled_trainer(cfg, data, device_of(cfg)))
    reads = sum(profile["chunks_read"].values())
    return {
        "cluster_mode": cfg.cluster.mode,
        "utterances": len(corpus.manifest),
        "training_chunks": data.train.n_total_chunks,
        "dev_chunks": data.dev.n_total_chunks,
        "n_mels": corpus.packed.frames.shape[1],
        "k": cfg.cluster.k,
        "batch_chunks": cfg.train.batch_utterances * cfg.chunking.n_chunks,
        "channels_last": cfg.train.channels_last,
        **profile,
        "read_chunks_per_s": reads / max(1e-9, sum(profile["read_s"].values())),
        "embedded_per_training_chunk": profile["chunks_read"].get("embed", 0)
        / data.train.n_total_chunks,
    }


# --------------------------------------------------------------------------------------------
# The run


def run(setup: Setup, workdir: Path, flags: list[str]) -> dict:
    """Every part in order; ``flags`` (``--quick``, ``--device``, ``--amp``) go to the probes."""
    set_threads()
    cfg = bench_config(setup.overrides)
    load_before = load_average()
    began = time.perf_counter()
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
        "wait_policy": wait_policy_probe(flags),
    }
    result["machine"] = {
        **machine_info(("torch", "numpy", "faiss-cpu"), load_before),
        "accelerator": accelerator_name(device_of(cfg)),
    }
    result["wall_s"] = time.perf_counter() - began
    return result


def accelerator_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def print_table(r: dict) -> None:
    t, m = r["throughput"], r["model"]
    print(
        f"encoder {m['channels']} on {m['frames']}x{m['n_mels']}, {m['parameters'] / 1e6:.2f} M "
        f"parameters; {r['threads']} threads; device {t['device']}, amp {t['amp']}; "
        f"load {r['machine']['loadavg_before']}"
    )
    print(f"{'':34}{'chunks/s':>10}{'median':>9}{'GFLOP/s':>9}{'of matmul':>11}")
    for key, rate in t["rates"].items():
        u = t["utilisation"][key]
        kind, variant = key.split("/")
        label = f"{'train fwd+bwd' if kind == 'train' else 'inference fwd'} {variant}"
        print(
            f"{label:34}{rate['chunks_per_s']:10.1f}{rate['median_chunks_per_s']:9.1f}"
            f"{u['gflop_per_s']:9.1f}{u['fraction_of_matmul']:11.1%}"
        )
    sp = t["channels_last_speedup"]
    print(f"channels_last speed-up: train {sp['train']:.2f}x, inference {sp['infer']:.2f}x")
    check = t["channels_last_check"]
    print(
        "convs running channels_last: "
        + ", ".join(
            f"{k} {v['convs_channels_last']}/{v['convs']}"
            for k, v in check.items()
            if isinstance(v, dict)
        )
        + f"; explicit input conversion changes strides: "
        f"{check['explicit_input_conversion_changes_strides']}"
    )
    f, p = t["flops"], t["peak_flops"]
    print(
        f"FLOP per chunk: forward {f['forward_flop_per_chunk'] / 1e6:.0f} M, training step "
        f"{f['train_flop_per_chunk'] / 1e6:.0f} M (torch counter: "
        f"{f['flop_counter']['forward_flop_per_chunk'] / 1e6:.0f} M / "
        f"{f['flop_counter']['train_flop_per_chunk'] / 1e6:.0f} M); peaks: matmul "
        f"{p['matmul']['gflop_per_s']:.0f} GFLOP/s, 3x3 conv {p['conv3x3']['gflop_per_s']:.0f} GFLOP/s"
    )
    best = max(
        t["utilisation"][f"train/{v}"]["fraction_of_matmul"] for v in ("default", "channels_last")
    )
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy encoder, seconds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--utterances", type=int, default=None, help="epoch profile corpus size")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (train.amp=true)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    precision = (f"train.device={args.device}", f"train.amp={str(args.amp).lower()}")
    setup = replace(setup, overrides=(*setup.overrides, *precision))
    flags = [*(["--quick"] if args.quick else []), "--device", args.device]
    flags += ["--amp"] if args.amp else []
    if args.probe:  # a short measurement: two steps of each kind per thread count
        setup = replace(setup, rounds=1, steps=min(setup.steps, 2))
        cfg = bench_config(setup.overrides)
        rates = {}
        for threads in (2, 1):
            for kind, rate in channels_last_rates(cfg, setup, threads).items():
                rates[f"{kind}_{threads}_threads"] = rate
        print(json.dumps(rates))
        return 0
    setup = replace(
        setup,
        rounds=args.rounds or setup.rounds,
        utterances=args.utterances or setup.utterances,
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-") as workdir:
        result = run(setup, Path(workdir), flags)
    result["mode"] = "quick" if args.quick else "full"
    result["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    print_table(result)
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
