"""A tiny model and random chunks for the unit tests of the model's parts: no corpus, no run."""

from __future__ import annotations

import torch

from deepemocluster.config import load_config
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.build import build_model
from tests.support.tiny_config import TINY_MODEL

N_MELS, FRAMES = 32, 62  # TINY_MODEL's mels, the schema's frames per chunk


def tiny_model(*overrides: str) -> DeepEmoCluster:
    """The schema with TINY_MODEL, K = 4 and ``overrides``, from seed 0, in eval mode."""
    cfg = load_config(overrides=["data.root=unused", *TINY_MODEL, "cluster.k=4", *overrides])
    torch.manual_seed(0)
    return build_model(cfg, N_MELS).eval()


def random_chunks(n: int, seed: int = 0) -> torch.Tensor:
    """(n, FRAMES, N_MELS) standard normal chunks."""
    return torch.randn(n, FRAMES, N_MELS, generator=torch.Generator().manual_seed(seed))
