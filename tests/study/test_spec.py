"""The study file is strict: typos and parameters the training schema does not know are refused,
naming the key, before any trial (or any file) exists."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import optuna
import pytest
import yaml

import deepemocluster
from deepemocluster.errors import ConfigError
from deepemocluster.study.spec import check_params, load_spec, parse_params

REPO = Path(deepemocluster.__file__).resolve().parents[1]


def test_typo_in_the_study_file_is_refused_before_any_trial(study_env, caplog):
    path = study_env.write("typo", heartbeat=5, params={"train.seed": [0, 1]})
    with caplog.at_level(logging.ERROR, logger="deepemocluster"):
        assert study_env.run(path) == 1
    assert "'heartbeat'" in caplog.text and "heartbeat_s" in caplog.text  # named, with a hint
    assert not study_env.runs.exists()  # no storage, no run folder, no MLflow run


def test_parameter_outside_the_training_schema_is_refused_before_any_trial(study_env, caplog):
    path = study_env.write("schema", params={"train.seed": [0, 1], "train.epoch": [1, 2]})
    with caplog.at_level(logging.ERROR, logger="deepemocluster"):
        assert study_env.run(path) == 1
    assert "params.train.epoch: not an option" in caplog.text
    assert "did you mean train.epochs" in caplog.text
    assert not study_env.runs.exists()


def test_a_storage_whose_driver_is_missing_is_refused_naming_the_driver(study_env, caplog):
    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here: its driver is not missing")
    path = study_env.write("driver", params={"train.seed": [0, 1]})
    storage = "study.storage=mysql+pymysql://user:secret@127.0.0.1:9/studies"
    with caplog.at_level(logging.ERROR, logger="deepemocluster"):
        assert study_env.run(path, storage) == 1
    assert (
        "database driver is not installed" in caplog.text and "pip install pymysql" in caplog.text
    )
    assert "secret" not in caplog.text  # the password is not written to the log
    assert not (study_env.runs / "driver" / "t0000").exists()  # no trial began


@pytest.mark.parametrize(
    ("fields", "overrides", "named"),
    [
        ({"params": {"data.label_fraction": [0.5, 1.5]}}, [], "params.data.label_fraction=1.5"),
        ({"params": {"model.channels": [1, 2]}}, [], "params.model.channels: a list option"),
        ({"params": {"tracking.run_name": ["a", "b"]}}, [], "set by the study"),
        ({"params": {"train.seed": [0, 1]}}, ["train.seed=3"], "also set on the command line"),
        ({"params": {"cluster.k": {"low": 2, "high": 9}}}, [], "a grid study takes a list"),
        (
            {"sampler": "tpe", "trials": 3, "params": {"cluster.k": {"low": 2, "hi": 9}}},
            [],
            "params.cluster.k.hi",
        ),
        (
            {
                "sampler": "tpe",
                "trials": 3,
                "params": {"optim.main.lr": {"low": 0, "high": 1, "log": True}},
            },
            [],
            "params.optim.main.lr: a log range",
        ),
        ({"sampler": "tpe", "params": {"cluster.k": [5, 10]}}, [], "trials"),
        ({"sampler": "random", "params": {"cluster.k": [5, 10]}}, [], "sampler 'random'"),
        ({"storage": "redis://x", "params": {"cluster.k": [5, 10]}}, [], "storage 'redis://x'"),
        ({"params": {"train.seed": [0, 0]}}, [], "listed twice"),
        ({"params": {"train.epochs": [0, 2]}}, [], "params.train.epochs=0"),
    ],
)
def test_bad_study_files_fail_naming_the_key(tmp_path, fields, overrides, named):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(fields))
    base = ["data.root=/nonexistent/corpus", *overrides]
    with pytest.raises(ConfigError, match=re.escape(named)):
        spec = load_spec(path)
        check_params(parse_params(spec), None, base)


def test_ranges_and_choices_become_optuna_suggestions(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sampler": "tpe",
                "trials": 5,
                "params": {
                    "cluster.k": {"low": 5, "high": 60, "log": True},
                    "optim.main.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                    "cluster.pca_dim": [0, 64],
                },
            }
        )
    )
    spec = load_spec(path, ["seed=7"])
    assert (spec.name, spec.seed) == ("search", 7)  # name from the file, override applied
    params = parse_params(spec)
    check_params(params, None, ["data.root=/nonexistent/corpus"])
    trial = optuna.create_study().ask()
    values = {p.key: p.suggest(trial) for p in params}
    k, lr, pca = values["cluster.k"], values["optim.main.lr"], values["cluster.pca_dim"]
    assert isinstance(k, int) and 5 <= k <= 60
    assert isinstance(lr, float) and 1e-4 <= lr <= 1e-2
    assert pca in (0, 64)
    assert trial.distributions["cluster.k"].log and trial.distributions["optim.main.lr"].log


@pytest.mark.parametrize("name", ["label_efficiency", "k_search"])
@pytest.mark.parametrize("config", ["default", "paper"])
def test_shipped_study_files_fit_the_shipped_configs(name, config):
    spec = load_spec(REPO / "configs" / "studies" / f"{name}.yaml")
    params = parse_params(spec)
    check_params(params, str(REPO / "configs" / f"{config}.yaml"), ["data.root=/nonexistent"])
    assert spec.name == name and params
