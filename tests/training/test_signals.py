"""Interrupted jobs: a signal at each chosen point (deepemocluster.faults), then resume, reaches
the same final metrics as an uninterrupted run; no partial checkpoint or feature entry is read.

One run is interrupted again and again, each resume going a little further: SIGTERM in feature
extraction, in clustering, in a training step and in MLflow logging, kill -9 while checkpoint_last
is being written (a child process), SIGTERM in the final logging, and a last resume to the end.
The SIGTERM steps run in this process (fast); the handler is the real one that ``run`` installs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import load_config
from deepemocluster.data.features import FeatureSettings, FeatureStore
from deepemocluster.errors import Interrupted
from deepemocluster.training.run import run
from deepemocluster.training.run_folder import BEST, LAST
from tests.support.cli import cli_env, run_cli, run_id_of

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stray_signals_fail_the_test")]


def test_interrupt_at_every_point_then_resume_matches_an_uninterrupted_run(
    demo, reference, failpoint, main_in_process, tmp_path
):
    store, runs = tmp_path / "features", tmp_path / "runs"  # a fresh store: extraction happens
    args = demo.overrides(runs, "cut", f"features.store={store}")
    resume_args = [*args, "train.resume=true"]
    resume = load_config(overrides=resume_args)
    run_dir = runs / "cut"
    client = MlflowClient(resume.tracking.uri)

    # 1. SIGTERM in feature extraction, between an entry's temporary file and its rename. Through
    #    the command line: exit 128 + 15 and the resume hint, not the default handler's death.
    failpoint("feature_write:5")
    out = main_in_process("train", args)
    assert out.code == 143, out.errors
    assert "train.resume=true tracking.run_name=cut" in out.errors
    run_id = run_id_of(run_dir)
    assert client.get_run(run_id).info.status == "KILLED"
    assert len(list(store.rglob("entries/*/*.npy"))) == 4  # the fifth never got its name
    assert not list(store.rglob("*.tmp"))

    # 2. SIGTERM in the first clustering: the flag stops the epoch at its first step
    failpoint("cluster:1")
    with pytest.raises(Interrupted):
        run(resume)
    assert not (run_dir / LAST).exists()

    # 3. SIGTERM in a training step (the 3rd batch of epoch 1)
    failpoint("train_step:3")
    with pytest.raises(Interrupted):
        run(resume)
    assert not (run_dir / LAST).exists()

    # 4. SIGTERM while epoch 1's metrics are logged: the epoch is finished and checkpointed first
    failpoint("mlflow_log:1")
    with pytest.raises(Interrupted):
        run(resume)
    assert Checkpoint.load(run_dir / LAST).epoch == 1

    # 5. kill -9 while epoch 2's checkpoint_last is written: the previous one stays usable
    killed = run_cli(
        "train", resume_args, tmp_path, DEEPEMOCLUSTER_FAILPOINT="write_checkpoint_last:1:kill"
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert Checkpoint.load(run_dir / LAST).epoch == 1
    (torn,) = run_dir.glob(f".{LAST}.*.tmp")  # the whole new file, never renamed into place
    assert Checkpoint.load(torn).epoch == 2

    # 6. SIGTERM in the final logging (call 1: epoch 2's metrics, call 2: the test metrics)
    failpoint("mlflow_log:2")
    with pytest.raises(Interrupted):
        run(resume)
    assert not torn.exists()  # resume cleared the leftover
    assert Checkpoint.load(run_dir / LAST).epoch == 2

    # 7. resume to the end
    failpoint("")
    test = run(resume)
    assert test == reference
    assert run_id_of(run_dir) == run_id
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    for key in ("dev/ccc_mean", "train/loss_ce", "train/loss_ccc", "cluster/empty"):
        history = client.get_metric_history(run_id, key)
        assert {m.step for m in history} == {1, 2}, key
        for step in (1, 2):  # a repeated epoch logs the same numbers again
            assert len({m.value for m in history if m.step == step}) == 1, (key, step)
    assert r.data.metrics["test/ccc_mean"] == pytest.approx(reference["test/ccc_mean"])
    assert Checkpoint.load(run_dir / BEST).clusters is not None


def test_kill_during_feature_write_leaves_nothing_that_is_read_back(demo, tmp_path):
    """kill -9 between an entry's temporary file and its rename (a child process): the entry does
    not exist, and the next pass computes it afresh instead of reading the torn file."""
    cfg = demo.config(tmp_path / "runs", "unused", f"features.store={tmp_path / 'store'}")
    paths = sorted(str(p) for p in (demo.root / "Audios").glob("*.wav"))[:3]
    settings = asdict(FeatureSettings.from_config(cfg.features))
    script = textwrap.dedent(f"""
        from deepemocluster.data.features import FeatureSettings, FeatureStore
        store = FeatureStore({cfg.features.store!r}, FeatureSettings(**{settings!r}))
        store.extract({paths!r})
    """)
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=cli_env(DEEPEMOCLUSTER_FAILPOINT="feature_write:2:kill"),
        timeout=300,
    )
    assert child.returncode == -9, child.stderr[-3000:]
    store = FeatureStore(cfg.features.store, FeatureSettings.from_config(cfg.features))
    assert len(list(store.dir.rglob("entries/*/*.npy"))) == 1
    (torn,) = store.dir.rglob("*.tmp")
    torn.write_bytes(b"garbage")  # were it ever read, the features below would be wrong
    extraction = store.extract(paths)
    assert sorted(extraction.keys) == paths and not extraction.skipped
    for path in paths:
        np.testing.assert_array_equal(
            store.load(extraction.keys[path]), store.settings.compute(path)
        )
