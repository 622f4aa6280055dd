"""Fixtures for the study tests: the tiny demo corpus, its features and one MLflow sqlite store
shared by the session (every study has its own parent run), a study file writer and the command
line, in this process or in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

import deepemocluster
from deepemocluster.study.__main__ import main
from tests.support import postgres
from tests.support.tiny_config import TINY

REPO = Path(deepemocluster.__file__).resolve().parents[1]


@dataclass(frozen=True)
class StudyEnv:
    """One test's runs folder over the session's corpus, features and MLflow store."""

    runs: Path
    uri: str
    overrides: tuple[str, ...]

    def write(self, name: str, **fields) -> Path:
        """A study file ``<runs>/../<name>.yaml`` with ``fields`` (and ``name``)."""
        path = self.runs.parent / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **fields}, sort_keys=False))
        return path

    def args(self, study: Path, *extra: str) -> list[str]:
        return ["--study", str(study), *self.overrides, *extra]

    def run(self, study: Path, *extra: str) -> int:
        """The command in this process; its exit code."""
        return main(self.args(study, *extra))

    def command(self, study: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "deepemocluster.study", *self.args(study, *extra)]

    def spawn(self, study: Path, *extra: str, log: Path) -> subprocess.Popen:
        """The command in a child process, its output in ``log``."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(
            self.command(study, *extra), env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def study(self, name: str, storage: str = "") -> optuna.Study:
        """Study ``name`` in ``storage`` (default: its own sqlite file)."""
        storage = storage or f"sqlite:///{self.runs / name / 'study.db'}"
        return optuna.load_study(study_name=name, storage=storage)

    def children(self, parent_id: str) -> list:
        client = MlflowClient(self.uri)
        experiment = client.get_run(parent_id).info.experiment_id
        return client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
        )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL database for the study storage (skipped where the server or the
    driver is not installed; CI installs both)."""
    pytest.importorskip("psycopg")
    if postgres.server_binaries() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    with postgres.postgres_database("studies") as url:
        yield url


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("study_shared")


@pytest.fixture
def study_env(shared, tmp_path) -> StudyEnv:
    uri = f"sqlite:///{shared / 'mlflow.db'}"
    overrides = (
        *TINY,
        "train.threads=1",
        f"data.root={shared / 'demo'}",
        f"features.store={shared / 'features'}",
        f"tracking.runs_dir={tmp_path / 'runs'}",
        f"tracking.uri={uri}",
    )
    return StudyEnv(tmp_path / "runs", uri, overrides)
