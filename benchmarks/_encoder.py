"""What one encoder call costs and what the hardware could give it: a training step and an
embedding batch as the trainer runs them, their FLOPs, and the matmul and convolution peaks they
are compared with (``train_throughput.py`` and ``paper_epoch.py`` measure with these)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from deepemocluster.config import load_config
from deepemocluster.losses import ccc_loss
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.build import build_model
from deepemocluster.runtime.hardware import resolve_amp
from deepemocluster.serving.inference import autocast
from deepemocluster.training.microbatch import SplitStep

CL = torch.channels_last


def bench_config(overrides: tuple[str, ...] | list[str] = ()) -> DictConfig:
    """The library defaults (+ overrides); the corpus is synthetic, so ``data.root`` is unused."""
    return load_config(None, ["data.root=unused", "train.device=cpu", *overrides])


def device_of(cfg: DictConfig) -> torch.device:
    return torch.device(cfg.train.device)


def amp_of(cfg: DictConfig) -> bool:
    """``train.amp`` (true | false | auto) as the trainer resolves it on this run's device."""
    return resolve_amp(cfg.train.amp, device_of(cfg))[0]


def sync_of(device: torch.device) -> Callable[[], None] | None:
    """What a timed call must wait for: CUDA kernels are asynchronous."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def make_model(cfg: DictConfig, n_mels: int, channels_last: bool) -> DeepEmoCluster:
    torch.manual_seed(0)
    model = build_model(cfg, n_mels).to(device_of(cfg))
    return model.to(memory_format=CL) if channels_last else model


def training_step(model: DeepEmoCluster, cfg: DictConfig, batch: int, n_mels: int) -> Callable:
    """One step on a fixed random batch, as ``Trainer.train_pass`` takes it: cross-entropy on the
    cluster logits + (1 - CCC), micro-batched as ``train.micro_batch_chunks`` says, Adam."""
    device = device_of(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.chunking.frames, n_mels, generator=g).to(device)
    labels = torch.randint(0, cfg.cluster.k, (batch,), generator=g).to(device)
    targets = torch.randn(batch, len(cfg.model.attributes), generator=g).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.main.lr)
    split = SplitStep(model, model, cfg.train.micro_batch_chunks, device, amp_of(cfg))

    def step() -> None:
        model.train()
        aux, named = split.forward(x)
        loss = F.cross_entropy(aux, labels) + ccc_loss(named["plain"], targets)
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


# FLOPs


def model_flops(cfg: DictConfig, n_mels: int) -> dict:
    """Per-chunk FLOPs (2 per multiply-add) of the convolutions and linear layers; BatchNorm,
    ReLU, the loss and the optimiser are left out (elementwise, a few % at most). A training step
    is the forward, the weight gradients, and the input gradients of every layer but the first
    (its input needs none)."""
    m, k = cfg.model, cfg.cluster.k
    convs = conv_macs(cfg.chunking.frames, n_mels, m.channels, m.strides)
    linear = (
        convs[-1]["out_elements"] * m.embed_dim  # encoder dense
        + m.embed_dim * m.head_dim
        + m.head_dim * k  # cluster head
        + m.embed_dim * m.head_dim
        + m.head_dim * len(m.attributes)  # regressor
    )
    forward = 2 * (sum(c["macs"] for c in convs) + linear)
    return {
        "conv_macs": [c["macs"] for c in convs],
        "linear_macs": linear,
        "forward_flop_per_chunk": forward,
        "train_flop_per_chunk": 3 * forward - 2 * convs[0]["macs"],
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
        aux, named = model(x2)
        (aux.sum() + named["plain"].sum()).backward()
    return {
        "forward_flop_per_chunk": fwd.get_total_flops(),
        "train_flop_per_chunk": both.get_total_flops() / 2,
    }


# The hardware's rate


def peak_kernels(
    matmul_n: int, conv_batch: int, device: torch.device, dtype: torch.dtype
) -> dict[str, tuple[Callable[[], None], int]]:
    """What the cores deliver: an n x n matmul (the usual yardstick) and a 64 -> 64 channel,
    channels_last 3x3 convolution on conv_batch x 64 x 64 inputs, with the FLOPs of one call."""
    a, b = (torch.randn(matmul_n, matmul_n, device=device, dtype=dtype) for _ in range(2))
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    conv = conv.to(device=device, dtype=dtype, memory_format=CL)
    x = torch.randn(conv_batch, 64, 64, 64, device=device, dtype=dtype).contiguous(memory_format=CL)

    @torch.inference_mode()
    def convolve() -> None:
        conv(x)

    return {
        "matmul": (lambda: torch.mm(a, b), 2 * matmul_n**3),
        "conv3x3": (convolve, 2 * conv_batch * 64 * 64 * 64 * 64 * 9),
    }


def flop_rate(times: list[float], flop: float) -> dict:
    return {"gflop_per_s": flop / min(times) / 1e9, "seconds": times}
