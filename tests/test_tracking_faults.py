"""Tracking-server faults against a real `mlflow server` on 127.0.0.1 (one per module, on a fixed
port so that it can come back at the same URI): down at start, killed mid-run then back for the
resume, and two jobs logging to it at once."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import load_config
from deepemocluster.training.run import run
from deepemocluster.training.run_folder import LAST
from tests.support.cli import cli_command, cli_env, is_stopped, run_id_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stray_signals_fail_the_test")]

EPOCH_METRICS = ("dev/ccc_mean", "train/loss_ce", "train/loss_ccc", "cluster/empty")


def test_server_down_at_start_fails_fast_naming_the_uri(
    demo, mlflow_server, main_in_process, tmp_path
):
    mlflow_server.down()
    runs = tmp_path / "runs"
    start = time.monotonic()
    out = main_in_process(
        "train",
        demo.overrides(
            runs, "early", f"tracking.uri={mlflow_server.uri}", "tracking.connect_timeout_s=3"
        ),
    )
    assert out.code == 1
    assert time.monotonic() - start < 10
    assert f"MLflow tracking server {mlflow_server.uri} is not reachable" in out.errors
    # nothing to clean up: the same command just works once the server is there
    assert not (runs / "early").exists()


def test_two_jobs_log_to_one_server_at_once(demo, reference, mlflow_server, tmp_path):
    uri = mlflow_server.up()
    runs = tmp_path / "runs"
    extra = (f"tracking.uri={uri}", "tracking.experiment=shared")
    jobs, logs = {}, {}
    try:
        for name in ("job-a", "job-b"):
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("w") as stderr:
                # each job pauses (SIGSTOP) at its first metrics: both runs are then open, and
                # both go on at the same moment, logging side by side
                jobs[name] = subprocess.Popen(
                    cli_command("train", demo.overrides(runs, name, *extra)),
                    stderr=stderr,
                    cwd=tmp_path,
                    env=cli_env(DEEPEMOCLUSTER_FAILPOINT="mlflow_log:1:stop"),
                )
        for name, job in jobs.items():
            wait_until(lambda j=job: is_stopped(j.pid) or j.poll() is not None, 300, name)
            assert job.poll() is None, logs[name].read_text()[-3000:]
        for job in jobs.values():
            job.send_signal(signal.SIGCONT)
        for name, job in jobs.items():
            assert job.wait(300) == 0, logs[name].read_text()[-3000:]
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    by_name = {r.info.run_name: r for r in found}
    assert sorted(by_name) == ["job-a", "job-b"]
    a, b = by_name["job-a"], by_name["job-b"]
    assert a.info.run_id == run_id_of(runs / "job-a") != b.info.run_id == run_id_of(runs / "job-b")
    assert a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time  # overlap
    for r in (a, b):
        assert r.info.status == "FINISHED"
        for key in EPOCH_METRICS:
            assert sorted(m.step for m in client.get_metric_history(r.info.run_id, key)) == [1, 2]
        # the same config and data: sharing the server changed nothing in the numbers
        for key, value in reference.items():
            assert r.data.metrics[key] == pytest.approx(value, abs=1e-12), key


def test_server_killed_mid_run_then_resume_completes_the_same_run(
    demo, reference, mlflow_server, tmp_path
):
    uri = mlflow_server.up()
    runs = tmp_path / "runs"
    args = demo.overrides(runs, "flaky", f"tracking.uri={uri}", "tracking.experiment=flaky")
    log = tmp_path / "flaky.log"
    with log.open("w") as stderr:
        # the job pauses just before logging epoch 2; the server goes away; the job goes on
        job = subprocess.Popen(
            cli_command("train", args),
            stderr=stderr,
            cwd=tmp_path,
            env=cli_env(DEEPEMOCLUSTER_FAILPOINT="mlflow_log:2:stop"),
        )
    try:
        wait_until(lambda: is_stopped(job.pid) or job.poll() is not None, 300, "the job")
        assert job.poll() is None, log.read_text()[-3000:]
        mlflow_server.down()
        job.send_signal(signal.SIGCONT)
        code = job.wait(120)
    finally:
        if job.poll() is None:
            job.kill()
    err = log.read_text()
    assert code == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert any("cannot log the metrics of step 2" in e and uri in e for e in errors), errors
    assert "intact (last finished epoch 1)" in err
    assert "train.resume=true tracking.run_name=flaky" in err
    assert Checkpoint.load(runs / "flaky" / LAST).epoch == 1
    run_id = run_id_of(runs / "flaky")

    mlflow_server.up()  # back, at the same URI
    test = run(load_config(overrides=[*args, "train.resume=true"]))
    assert test == reference
    client = MlflowClient(uri)
    (r,) = client.search_runs([client.get_experiment_by_name("flaky").experiment_id])
    assert r.info.run_id == run_id and r.info.status == "FINISHED"
    for key in EPOCH_METRICS:
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [1, 2], key
    assert r.data.metrics["test/ccc_mean"] == pytest.approx(reference["test/ccc_mean"])
