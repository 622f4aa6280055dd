"""Config keys of the Siamese head and transfer, the model with a Siamese head, block freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepemocluster.config import load_config
from deepemocluster.errors import ConfigError
from deepemocluster.model.build import build_model
from deepemocluster.transfer.finetune import frozen_block_count, main, run_transfer, source_config

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.root=/tmp/x", "model.channels=[4,8,8,16]", "model.strides=[1,2,2,2]"]


def test_siamese_keys_are_validated_by_name():
    assert load_config(overrides=[*TINY, "model.aux_head=siamese"]).model.aux_head == "siamese"
    for bad, key in (
        ("siamese.loss=triplet", "siamese.loss"),
        ("siamese.distance=l1", "siamese.distance"),
        ("siamese.bin_edges=[5.0,3.0]", "siamese.bin_edges"),
        ("siamese.bin_attribute=pitch", "siamese.bin_attribute"),
        ("transfer.shots=0", "transfer.shots"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(overrides=[*TINY, bad])


def test_source_paths_in_yaml_are_relative_to_the_file_and_become_the_pretraining_data(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "data: {root: target}\ntransfer: {source: {root: src, unlabelled: [more]}}\n"
    )
    cfg = load_config(tmp_path / "t.yaml", [f"tracking.runs_dir={tmp_path}"])
    assert cfg.transfer.source.root == str(tmp_path / "src")
    assert list(cfg.transfer.source.unlabelled) == [str(tmp_path / "more")]
    source = source_config(cfg, "pre")
    assert source.data.root == str(tmp_path / "src") and source.tracking.run_name == "pre"


def test_transfer_refuses_other_heads_and_a_missing_source():
    with pytest.raises(ConfigError, match="aux_head=siamese"):
        run_transfer(load_config(overrides=TINY))
    with pytest.raises(ConfigError, match="transfer.source.root"):
        source_config(load_config(overrides=[*TINY, "model.aux_head=siamese"]), "pre")


def test_frozen_block_count():
    assert frozen_block_count(0, 5) == 0
    assert frozen_block_count(2, 5) == 2
    assert frozen_block_count(-1, 5) == 4  # all but the last
    for bad in (6, -6):
        with pytest.raises(ConfigError, match="transfer.freeze_blocks"):
            frozen_block_count(bad, 5)


def test_siamese_model_outputs_embeddings_and_frozen_blocks_stay_in_eval_mode():
    cfg = load_config(overrides=[*TINY, "model.aux_head=siamese", "siamese.embed_dim=6"])
    model = build_model(cfg, 32)
    assert model.cluster is None and model.siamese is not None
    z, named = model(torch.randn(5, cfg.chunking.frames, 32))
    pred = named["prediction"]
    assert z.shape == (5, 6) and pred.shape == (5, 3)
    model.freeze_encoder_blocks(2)
    model.train()
    frozen, free = model.encoder.blocks[:2], model.encoder.blocks[2:]  # slices: new ModuleLists
    assert not any(m.training for block in frozen for m in block.modules())
    assert all(m.training for block in free for m in block.modules())
    assert not any(p.requires_grad for block in frozen for p in block.parameters())
    assert all(p.requires_grad for block in free for p in block.parameters())


def test_cli_reports_a_config_error_with_exit_code_1(caplog, tmp_path):
    args = ["--config", str(REPO / "configs" / "siamese_transfer.yaml"), "model.aux_head=cluster"]
    assert main([*args, f"tracking.runs_dir={tmp_path}"]) == 1
    assert "aux_head=siamese" in caplog.text
    assert not any(tmp_path.iterdir())  # refused before any run folder or store was made
