"""``python -m deepemocluster.train [--config FILE] [key=value ...]``: one DeepEmoCluster run.

Each epoch: embed every training chunk → k-means → fresh top layer → train the network on cluster
cross-entropy (all chunks) plus (1 − CCC) on the labelled chunks → evaluate on Development →
checkpoint. Exit code 0 only on success; an interrupted run resumes with ``train.resume=true``.
The work is done by ``deepemocluster.training``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepemocluster.config import load_config
from deepemocluster.runtime.cli import exit_code, setup_logging
from deepemocluster.training.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", default=None, help="YAML file (default: configs/default.yaml if present)"
    )
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    setup_logging()
    config_path = args.config or (
        "configs/default.yaml" if Path("configs/default.yaml").is_file() else None
    )
    name = Path(config_path).stem if config_path else "default"
    return exit_code(lambda: run(load_config(config_path, args.overrides), name))


if __name__ == "__main__":
    sys.exit(main())
