"""A search study prunes, through the training hooks, a trial that cannot learn."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def test_search_prunes_a_hopeless_setting_on_development_ccc(study_env):
    study_env = replace(  # the tiny config sets the learning rate this study varies
        study_env, overrides=tuple(o for o in study_env.overrides if "optim.main.lr" not in o)
    )
    # lr 0 never moves the regressor: its Development CCC stays at 0 while lr 0.003 climbs.
    # With seed 0 the sampler's random start tries 0, 0.003, 0: the third trial meets the
    # median of a learning and a frozen one after epoch 2 and is stopped there.
    path = study_env.write(
        "search",
        sampler="tpe",
        trials=3,
        seed=0,
        pruner={"startup_trials": 1, "warmup_epochs": 1},
        params={"optim.main.lr": [0.003, 0.0]},
    )
    assert study_env.run(path, "model.aux_head=none", "train.epochs=3") == 0

    study = study_env.study("search")
    trials = study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(trials) == 3 and pruned
    assert {t.params["optim.main.lr"] for t in pruned} == {0.0}  # only the hopeless setting
    assert all(max(t.intermediate_values) == 2 for t in pruned)  # stopped after epoch 2 of 3
    learning = [t for t in trials if t.params["optim.main.lr"] > 0]
    assert learning and all(t.state == TrialState.COMPLETE for t in learning)
    assert all(len(t.intermediate_values) == 3 for t in learning)

    client = MlflowClient(study_env.uri)
    for t in pruned:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and "pruner" in run.data.tags["stopped_by"]

    report = study_env.runs / "search" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["pruned"] == len(pruned) and summary["complete"] == 3 - len(pruned)
    assert (report / "history.png").stat().st_size > 10_000
