"""A whole grid study through the command line: nested MLflow runs, tags both ways, the
report and its label-efficiency analysis, and a rerun that starts nothing."""

from __future__ import annotations

import itertools
import logging

import matplotlib.image
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

GRID = {"data.label_fraction": [0.5, 1.0], "model.aux_head": ["cluster", "none"], "train.seed": [0]}


def test_grid_study_runs_each_cell_once_under_one_parent_and_reports(study_env, caplog):
    path = study_env.write("grid", params=GRID)
    assert study_env.run(path) == 0

    study = study_env.study("grid")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    cells = {(t.params["data.label_fraction"], t.params["model.aux_head"]) for t in trials}
    assert cells == set(itertools.product([0.5, 1.0], ["cluster", "none"]))

    # MLflow: one parent, four nested runs, each linked to its trial both ways
    client = MlflowClient(study_env.uri)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["study"] == "grid"
    children = study_env.children(parent_id)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    by_trial = {int(c.data.tags["study.trial"]): c for c in children}
    assert sorted(by_trial) == [t.number for t in trials]
    for t in trials:
        run = by_trial[t.number]
        assert run.data.tags["study"] == "grid"
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.params["data.label_fraction"] == str(t.params["data.label_fraction"])
        assert t.user_attrs["test/ccc_mean"] == pytest.approx(run.data.metrics["test/ccc_mean"])
        dev = [m.value for m in client.get_metric_history(run.info.run_id, "dev/ccc_mean")]
        assert t.value == pytest.approx(max(dev))  # the objective: best Development CCC

    # the report: one row per trial, the label-efficiency table and figure, logged to the parent
    report = study_env.runs / "grid" / "report"
    table = pd.read_csv(report / "trials.csv")
    assert len(table) == 4 and sorted(table["trial"]) == [0, 1, 2, 3]
    le = pd.read_csv(report / "label_efficiency.csv")
    for fraction in (0.5, 1.0):
        rows = table[table["data.label_fraction"] == fraction].set_index("model.aux_head")
        gain = le[(le["data.label_fraction"] == fraction) & (le["metric"] == "test/ccc_mean")]
        gain = gain.set_index("setting")["mean"]
        expected = rows.loc["cluster", "test/ccc_mean"] - rows.loc["none", "test/ccc_mean"]
        assert gain["cluster − none"] == pytest.approx(expected)
    image = matplotlib.image.imread(report / "label_efficiency.png")
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05
    logged = {a.path for a in client.list_artifacts(parent_id, "report")}
    assert {"report/trials.csv", "report/label_efficiency.png", "report/report.html"} <= logged
    assert client.get_run(parent_id).data.metrics["study/complete"] == 4

    # the same command again: nothing left to run, nothing new anywhere
    assert study_env.run(path) == 0
    assert len(study_env.study("grid").get_trials()) == 4
    assert len(study_env.children(parent_id)) == 4

    # another training setting is refused, naming it ...
    with caplog.at_level(logging.ERROR, logger="deepemocluster"):
        assert study_env.run(path, "train.epochs=3") == 1
    assert "(train.epochs differ)" in caplog.text
    # ... but an option the study's saved config lacks (one added by an upgrade of the package)
    # counts as changed only when set away from its default
    saved = study_env.study("grid").user_attrs["config"]
    assert saved.pop("model.pooling") == "mean"
    study_env.study("grid").set_user_attr("config", saved)
    assert study_env.run(path) == 0
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="deepemocluster"):
        assert study_env.run(path, "model.pooling=attention") == 1
    assert "(model.pooling differ)" in caplog.text
