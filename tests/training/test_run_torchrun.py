"""Two CPU ranks under a real ``torchrun`` (gloo): the ranks agree on every clustering, only rank 0
tracks, a killed distributed run resumes to the uninterrupted run's numbers, and two_stage with
attention pooling in micro-batches runs both kinds of split step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.runtime.distributed import digest
from deepemocluster.training.run_folder import LAST

pytestmark = pytest.mark.slow

RANKS = 2
DIGEST = re.compile(r"epoch (\d+) (\w+) assignments (\w+) \(rank (\d) of 2\)")


@dataclass
class Launch:
    returncode: int
    logs: dict[int, str]  # rank → its stderr
    output: str


def torchrun(overrides: list[str], logs: Path, **env: str) -> Launch:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={RANKS}",
            "--log-dir",
            str(logs),
            "--redirects",
            "3",
            "-m",
            "deepemocluster.train",
            *overrides,
            "train.threads=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    stderr = {int(p.parent.name): p.read_text() for p in logs.rglob("stderr.log")}
    return Launch(proc.returncode, stderr, proc.stdout + proc.stderr)


def digests(log: str) -> dict[tuple[int, str], str]:
    return {(int(m[1]), m[2]): m[3] for m in DIGEST.finditer(log)}


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory, corpus_dirs):
    from tests.support.tiny_config import TINY

    base = tmp_path_factory.mktemp("ddp")
    overrides = [
        *TINY,
        f"data.root={corpus_dirs['root']}",
        f"features.store={corpus_dirs['store']}",
        f"tracking.runs_dir={base / 'runs'}",
        "tracking.run_name=ddp",
    ]
    launch = torchrun(overrides, base / "logs")
    assert launch.returncode == 0, launch.output + "\n".join(launch.logs.values())
    return overrides, base, launch


def test_every_rank_holds_the_same_assignments_every_epoch(distributed_run):
    _, base, launch = distributed_run
    assert sorted(launch.logs) == [0, 1]
    per_rank = [digests(launch.logs[r]) for r in range(RANKS)]
    assert sorted(per_rank[0]) == [(1, "joint"), (2, "joint")]
    assert per_rank[0] == per_rank[1]
    for epoch in (1, 2):  # and they are what rank 0 saved
        saved = np.load(base / "runs" / "ddp" / "assignments" / f"epoch_{epoch:03d}.npz")
        assert digest(saved["assignments"].astype(np.int64)) == per_rank[0][(epoch, "joint")]
    assert per_rank[0][(1, "joint")] != per_rank[0][(2, "joint")]


def test_only_rank_0_tracks_and_metrics_are_logged_once(distributed_run):
    _, base, launch = distributed_run
    client = MlflowClient(f"sqlite:///{base / 'runs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("deepemocluster").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev/ccc_mean")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "test/ccc_mean")) == 1
    assert "epoch 1/2" in launch.logs[0] and "epoch 1/2" not in launch.logs[1]
    assert "MLflow run" not in launch.logs[1]
    assert Checkpoint.load(base / "runs" / "ddp" / LAST).epoch == 2


def test_a_killed_distributed_run_resumes_to_the_same_numbers(distributed_run, tmp_path):
    overrides, base, _ = distributed_run
    reference = MlflowClient(f"sqlite:///{base / 'runs' / 'mlflow.db'}")
    (ref,) = reference.search_runs(
        [reference.get_experiment_by_name("deepemocluster").experiment_id]
    )
    runs = tmp_path / "runs"
    mine = [*overrides, f"tracking.runs_dir={runs}"]
    # rank 0 is killed as it starts the second clustering: epoch 1 is checkpointed
    killed = torchrun(mine, tmp_path / "logs1", DEEPEMOCLUSTER_FAILPOINT="cluster:2:kill")
    assert killed.returncode != 0
    assert Checkpoint.load(runs / "ddp" / LAST).epoch == 1

    resumed = torchrun([*mine, "train.resume=true"], tmp_path / "logs2")
    assert resumed.returncode == 0, resumed.output + "\n".join(resumed.logs.values())
    assert "resumed after epoch 1" in resumed.logs[0]
    assert digests(resumed.logs[0]) == digests(resumed.logs[1])
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("deepemocluster").experiment_id])
    assert run.info.status == "FINISHED"
    for key in ("test/ccc_mean", "test/ccc_arousal", "best_epoch"):
        assert run.data.metrics[key] == ref.data.metrics[key], key


def test_two_stage_with_attention_in_micro_batches_runs_both_step_kinds_under_torchrun(
    corpus_dirs, tmp_path
):
    """The unlabelled stage's one-pass cross-entropy and the labelled stage's two-pass step over
    whole utterances (attention pooling: each rank's 12 drawn labelled chunks bring their
    utterances), in micro-batches of at most 5 chunks that never cut an utterance, with one
    all-reduce per step, and the ridge readout's residual regressor, which the unlabelled stage
    leaves unused: no hang, no DDP error, the ranks agree on both stages' clusterings (their
    weights stayed equal), and both stages' losses and the readout's mixes are logged."""
    from tests.support.tiny_config import TINY

    runs = tmp_path / "runs"
    launch = torchrun(
        [
            *TINY,
            f"data.root={corpus_dirs['root']}",
            f"features.store={corpus_dirs['store']}",
            f"tracking.runs_dir={runs}",
            "tracking.run_name=ddp-split",
            "cluster.mode=two_stage",
            "model.pooling=attention",
            "train.micro_batch_chunks=5",
            "model.statistics=true",
            "model.ridge_readout=true",
        ],
        tmp_path / "logs",
    )
    assert launch.returncode == 0, launch.output + "\n".join(launch.logs.values())
    per_rank = [digests(launch.logs[r]) for r in range(RANKS)]
    assert sorted(per_rank[0]) == [(e, s) for e in (1, 2) for s in ("labelled", "unlabelled")]
    assert per_rank[0] == per_rank[1]
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("deepemocluster").experiment_id])
    for key in (
        "train/loss_ce_unlabelled",
        "train/loss_ce",
        "train/loss_ccc",
        "train/loss_readout",
    ):
        assert np.isfinite(run.data.metrics[key]), key
    assert {run.data.metrics["dev/readout_mix_arousal"]} <= {0.0, 0.5, 1.0}
