"""Several workers on one storage, and a worker killed mid-trial: each grid cell counts once."""

from __future__ import annotations

import json
import signal
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

NO_CLUSTERING = "model.aux_head=none"  # the fastest trials: these tests are about scheduling


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_worker_processes_share_a_grid_and_run_every_cell_once(study_env, storage, request):
    """On the default sqlite file and on a PostgreSQL server (the storage for many machines)."""
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else ""
    path = study_env.write(
        "shared", heartbeat_s=1, params={"data.label_fraction": [0.5, 1.0], "train.seed": [0, 1]}
    )
    extra = [f"study.storage={url}"] if url else []
    # the command in this process (its imports are paid already); its two workers are processes
    assert study_env.run(path, NO_CLUSTERING, *extra, "--workers", "2") == 0

    trials = study_env.study("shared", url).get_trials()
    ran = [t for t in trials if t.state == TrialState.COMPLETE]
    cells = sorted((t.params["data.label_fraction"], t.params["train.seed"]) for t in ran)
    assert cells == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]  # every cell ran, and only once
    # two workers asking at the same instant can be handed the same last cell: the later trial
    # gives way before any training (no MLflow run), marked as the other's duplicate
    for t in trials:
        if t.state != TrialState.COMPLETE:
            assert t.state == TrialState.PRUNED and t.user_attrs["duplicate_of"] in {
                r.number for r in ran
            }
    workers = {t.user_attrs["worker"] for t in ran}
    assert len(workers) == 2  # both processes ran trials
    parent = study_env.study("shared", url).user_attrs["mlflow_parent_run_id"]
    assert len(study_env.children(parent)) == 4
    # the report counts each cell once: a duplicate that gave way is counted apart, not a row
    report = study_env.runs / "shared" / "report"
    table = pd.read_csv(report / "trials.csv")
    assert len(table) == 4 and (table["state"] == "COMPLETE").all()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["duplicates_skipped"] == len(trials) - len(ran)


def test_killed_worker_is_retried_once_and_counted_once(study_env, tmp_path):
    path = study_env.write("killed", heartbeat_s=1, params={"train.seed": [0, 1]})
    proc = study_env.spawn(path, NO_CLUSTERING, log=tmp_path / "log")
    started = study_env.runs / "killed" / "t0001" / "run.json"  # trial 1 is training, 0 is done
    deadline = time.monotonic() + 240
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), (tmp_path / "log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    dead_run = json.loads(started.read_text())["run_id"]

    assert study_env.run(path, NO_CLUSTERING) == 0  # the same command completes the study

    trials = study_env.study("killed").get_trials()
    assert trials[1].state == TrialState.FAIL  # the dead trial is marked
    retries = [t for t in trials if t.system_attrs.get("retry_history")]
    assert [t.system_attrs["retry_history"] for t in retries] == [[1]]  # retried once
    assert retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[1].params
    assert len(trials) == 3

    report = study_env.runs / "killed" / "report"
    table = pd.read_csv(report / "trials.csv")
    assert sorted(table["train.seed"]) == [0, 1]  # each cell once, the dead trial not at all
    assert set(table["state"]) == {"COMPLETE"} and 1 not in set(table["trial"])
    assert table.set_index("train.seed").loc[trials[1].params["train.seed"], "retry_of"] == 1
    summary = json.loads((report / "summary.json").read_text())
    assert summary["complete"] == 2 and summary["retried"] == {"1": retries[0].number}

    client = MlflowClient(study_env.uri)
    dead = client.get_run(dead_run)
    assert dead.info.status == "FAILED"
    assert dead.data.tags["study.retried_as"] == str(retries[0].number)
    children = study_env.children(dead.data.tags["mlflow.parentRunId"])
    assert sorted(c.info.status for c in children) == ["FAILED"] + ["FINISHED"] * 2


def test_sigterm_stops_the_study_and_queues_the_trial_again(study_env, tmp_path):
    path = study_env.write("stopped", params={"train.seed": [0]})
    proc = study_env.spawn(path, NO_CLUSTERING, "train.epochs=8", log=tmp_path / "log")
    epoch_1 = study_env.runs / "stopped" / "t0000" / "checkpoint_last.pt"  # in the epoch loop
    deadline = time.monotonic() + 240
    while not epoch_1.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert epoch_1.exists(), (tmp_path / "log").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM

    trials = study_env.study("stopped").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["retry_history"] == [0] and trials[1].params == trials[0].params
    client = MlflowClient(study_env.uri)
    run = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED" and parent.data.tags["study"] == "stopped"
