"""``python -m deepemocluster.study --config FILE --study STUDY.yaml [key=value ...] [--workers N]``

Runs a study on Optuna: every trial a training run (a nested MLflow run of the study's run).
``study.<key>=value`` overrides a key of the study file, any other ``key=value`` the training
config. The same command resumes a killed study and, against a shared ``study.storage``, adds
workers on other machines. Exit code 0 only when every trial finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepemocluster.runtime.cli import exit_code, setup_logging
from deepemocluster.study.runner import run_study
from deepemocluster.study.spec import load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.study", description=__doc__.split("\n")[2]
    )
    parser.add_argument("--config", default=None, help="training config YAML (as for train)")
    parser.add_argument(
        "--study", required=True, help="study file, e.g. configs/studies/k_search.yaml"
    )
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("overrides", nargs="*", help="key=value (training) or study.key=value")
    args = parser.parse_args(argv)
    setup_logging()
    study_overrides = [o.removeprefix("study.") for o in args.overrides if o.startswith("study.")]
    training = [o for o in args.overrides if not o.startswith("study.")]
    config_path = args.config or (
        "configs/default.yaml" if Path("configs/default.yaml").is_file() else None
    )
    return exit_code(
        lambda: run_study(
            load_spec(args.study, study_overrides), config_path, training, args.workers
        )
    )


if __name__ == "__main__":
    sys.exit(main())
