"""End-to-end training runs on a tiny demo corpus against a real sqlite MLflow store."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.model.frontend import FrontEnd
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.run import run

pytestmark = pytest.mark.slow


def _client(cfg) -> tuple[MlflowClient, object]:
    client = MlflowClient(f"sqlite:///{Path(cfg.tracking.runs_dir) / 'mlflow.db'}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    (run_info,) = client.search_runs([exp.experiment_id])
    return client, run_info


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_joint_run_logs_everything_and_learns(tiny_cfg):
    cfg = tiny_cfg("train.epochs=4")
    test = run(cfg)
    client, r = _client(cfg)
    assert r.info.status == "FINISHED"
    assert r.data.params["train.epochs"] == "4" and r.data.params["cluster.mode"] == "joint"
    assert r.data.params["train.amp_resolved"] == "float32"  # train.amp=false in the tiny config
    assert {"git_commit", "data_fingerprint"} <= r.data.tags.keys()
    for key in (
        "dev/ccc_arousal",
        "dev/ccc_mean",
        "train/loss_ce",
        "train/loss_ccc",
        "cluster/empty",
        "time/epoch_s",
    ):
        assert [m.step for m in client.get_metric_history(r.info.run_id, key)] == [1, 2, 3, 4], key
    assert [m.step for m in client.get_metric_history(r.info.run_id, "cluster/nmi")] == [2, 3, 4]
    ccc_loss = [m.value for m in client.get_metric_history(r.info.run_id, "train/loss_ccc")]
    assert ccc_loss[-1] < ccc_loss[0]
    assert r.data.metrics["test/ccc_arousal"] == pytest.approx(test["test/ccc_arousal"])
    assert test["test/ccc_arousal"] > 0.2  # arousal is learnable from the demo audio
    files = _artifacts(client, r.info.run_id)
    assert {"config.yaml", "skipped.csv", "train.log", "checkpoints/checkpoint_best.pt"} <= files
    assert {f"assignments/epoch_{e:03d}.npz" for e in (1, 2, 3, 4)} <= files
    (logged_model,) = client.search_logged_models([r.info.experiment_id])
    assert logged_model.source_run_id == r.info.run_id and logged_model.name == "model"
    run_dir = Path(cfg.tracking.runs_dir) / "tiny"
    n_train_chunks = (48 + 24) * 3
    with np.load(run_dir / "assignments" / "epoch_004.npz") as f:
        assignments = f["assignments"]
    assert assignments.shape == (n_train_chunks,) and assignments.max() < 4
    best = Checkpoint.load(run_dir / "checkpoint_best.pt")
    assert best.epoch == int(test["best_epoch"])
    assert best.clusters.centroids.shape == (4, 32)  # K × embedding size, for predict
    assert "assignments/final.npz" in files
    assert not any(f.startswith("analysis/") for f in files)  # tracking.report=false


def test_a_long_unlabelled_episode_trains_as_its_segments(episode_run):
    """The tiny config plus one demo episode of about a minute: the run cuts it into segments,
    lists them in segments.csv, counts them in its data log line and trains on them."""
    folder = episode_run.run_dir
    with (folder / "segments.csv").open() as f:
        segments = list(csv.DictReader(f))
    assert segments and {Path(s["path"]).name for s in segments} == {"EPISODE_01.wav"}
    (line,) = [x for x in (folder / "train.log").read_text().splitlines() if " data: " in x]
    counts = re.search(r"48 labelled \+ (\d+) unlabelled .* \((\d+) of them segments", line)
    assert counts, line
    n_unlabelled, n_segments = map(int, counts.groups())
    assert n_segments == len(segments) > 0 and n_unlabelled == 24 + n_segments
    trained = (folder / "utterances.txt").read_text().split()
    assert [u for u in trained if "@" in u] == [s["id"] for s in segments]
    with np.load(folder / "assignments" / "final.npz") as f:
        assert f["assignments"].shape == ((48 + 24 + n_segments) * 3,)  # 3 chunks each
    client = MlflowClient(episode_run.uri)
    assert "segments.csv" in _artifacts(client, episode_run.run_id)


def test_regression_only_baseline_logs_no_clusters(tiny_cfg):
    cfg = tiny_cfg("model.aux_head=none")
    test = run(cfg)
    client, r = _client(cfg)
    assert "cluster/nmi" not in r.data.metrics and "train/loss_ce" not in r.data.metrics
    assert np.isfinite(test["test/ccc_mean"])
    assert len(client.get_metric_history(r.info.run_id, "train/loss_ccc")) == 2


def test_two_stage_clusters_each_part(tiny_cfg):
    cfg = tiny_cfg("cluster.mode=two_stage")
    run(cfg)
    _, r = _client(cfg)
    for key in (
        "cluster/empty_unlabelled",
        "train/loss_ce_unlabelled",
        "cluster/empty",
        "train/loss_ccc",
    ):
        assert key in r.data.metrics, key
    with np.load(Path(cfg.tracking.runs_dir) / "tiny" / "assignments" / "epoch_002.npz") as f:
        assert f["assignments"].shape == (48 * 3,)  # the labelled stage's own clustering


class FinalStageChunks(Hooks):
    """Counts the chunks that go through a front-end, of any model, once the last epoch has
    ended: a torch hook on every module's forward pass (the final stage's passes over the data,
    whatever model they run in)."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.chunks = epochs, 0
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epochs:
            self.handle = torch.nn.modules.module.register_module_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, FrontEnd):
            self.chunks += len(args[0])


def test_the_final_stage_embeds_train_once_and_rates_test_once(tiny_cfg):
    """The Test metrics and the report's Test figure share one pass, the final clustering and
    the report's Train tables one embedding of Train: the report runs no model at all."""
    cfg = tiny_cfg("tracking.report=true")
    counted = FinalStageChunks(cfg.train.epochs)
    try:
        run(cfg, hooks=[counted])
    finally:
        if counted.handle is not None:
            counted.handle.remove()
    n_train, n_test = 48 + 24, 16
    assert counted.chunks == (n_train + n_test) * cfg.chunking.n_chunks
    client, r = _client(cfg)
    assert "analysis/Train-best/summary.json" in _artifacts(client, r.info.run_id, "analysis")
    log = (Path(cfg.tracking.runs_dir) / "tiny" / "train.log").read_text()
    parts = r"\(test [\d.]+ s, clustering [\d.]+ s, model [\d.]+ s, report [\d.]+ s\)"
    assert re.search(rf"final stage: [\d.]+ s, [\d.]+ of the last epoch {parts}", log)


@pytest.mark.parametrize(
    "weight",
    # the joint batches' CCC; the cross-entropy alone of two_stage's unlabelled stage, whose
    # micro-batches take one pass each
    [["train.ccc_weight=nan"], ["train.ce_weight=nan", "cluster.mode=two_stage"]],
    ids=["ccc", "ce-alone"],
)
def test_nan_loss_stops_naming_epoch_and_step(tiny_overrides, weight, main_in_process):
    out = main_in_process("train", [*tiny_overrides, "train.micro_batch_chunks=5", *weight])
    assert out.code == 1
    assert "loss is nan at epoch 1, step 1" in out.errors


def test_config_typo_fails_before_work(tmp_path, main_in_process):
    default = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    out = main_in_process(
        "train", ["--config", str(default), "train.epochz=3", f"tracking.runs_dir={tmp_path}"]
    )
    assert out.code == 1
    assert "train.epochz" in out.errors
    assert not (tmp_path / "mlflow.db").exists()


def test_unreachable_server_reported_quickly(tiny_overrides, main_in_process):
    start = time.monotonic()
    args = [*tiny_overrides, "tracking.uri=http://127.0.0.1:9", "tracking.connect_timeout_s=3"]
    out = main_in_process("train", args)
    assert out.code == 1
    assert "http://127.0.0.1:9" in out.errors and "not reachable" in out.errors
    assert time.monotonic() - start < 15  # the 3 s budget, with room for a busy machine


def test_resume_with_changed_config_is_refused(tiny_overrides, main_in_process):
    assert main_in_process("train", [*tiny_overrides, "train.epochs=1"]).code == 0
    out = main_in_process(
        "train", [*tiny_overrides, "train.epochs=1", "cluster.k=5", "train.resume=true"]
    )
    assert out.code == 1 and "cluster.k" in out.errors
    out = main_in_process("train", [*tiny_overrides, "train.epochs=1"])
    assert out.code == 1 and "train.resume=true" in out.errors
