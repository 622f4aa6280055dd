"""Fixtures for the Siamese head and transfer tests: two tiny demo corpora made with different
seeds (so different speakers) as source and target, one feature store, a fresh MLflow store per
test, and a config that trains in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_config import TINY_MODEL

from deepemocluster.config import load_config


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_torch_thread):
    """Every test here trains tiny models (tests/conftest.py)."""


@pytest.fixture(scope="session")
def siamese_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("siamese")
    return {"source": base / "source", "target": base / "target", "store": base / "features"}


@pytest.fixture
def siamese_overrides(siamese_dirs, tmp_path) -> list[str]:
    """Target corpus as ``data``, source corpus as ``transfer.source``; 32 mels, 3 chunks, a
    4-block narrow encoder, the Siamese head."""
    return [
        "data.format=demo",
        f"data.root={siamese_dirs['target']}",
        "data.demo.seed=2",
        "data.demo.n_train=72",
        "data.demo.n_dev=8",
        "data.demo.n_test=48",
        "data.demo.n_unlabelled=0",
        "data.demo.n_speakers=12",
        "transfer.source.format=demo",
        f"transfer.source.root={siamese_dirs['source']}",
        "transfer.source.demo.seed=1",
        "transfer.source.demo.n_train=48",
        "transfer.source.demo.n_dev=8",
        "transfer.source.demo.n_test=8",
        "transfer.source.demo.n_unlabelled=0",
        "transfer.source.demo.n_speakers=8",
        f"features.store={siamese_dirs['store']}",
        *TINY_MODEL,
        "model.aux_head=siamese",
        "siamese.embed_dim=16",
        "train.threads=1",  # tiny steps: a second thread costs more than it gives on 2 busy cores
        "transfer.finetune_epochs=2",
        "transfer.finetune_lr=0.003",
        f"tracking.runs_dir={tmp_path / 'runs'}",
        "tracking.run_name=tiny",
    ]


@pytest.fixture
def siamese_cfg(siamese_overrides):
    def make(*extra: str):
        return load_config(overrides=[*siamese_overrides, *extra])

    return make
