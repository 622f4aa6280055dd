"""Siamese source → target transfer on two demo corpora: contrastive vs relative-distance loss ×
frozen encoder blocks × labelled target utterances per class, several seeds.

    python benchmarks/siamese_transfer.py [--seeds 0 1 2] [--out benchmarks/results/siamese_transfer.json] [key=value ...]

The source (demo seed 1) and target (demo seed 2) corpora are generated with different seeds, so
their speakers are different voices. Each (loss, seed) pre-trains once; every fine-tune reuses that
encoder through ``transfer.pretrained_run``. References: the same pre-trained encoder without
fine-tuning, the target-only fine-tune from a random start, and the untrained encoder. Prints
mean ± std over seeds and writes every run's numbers to JSON. Extra ``key=value`` arguments go to
the config (e.g. ``transfer.finetune_epochs=2`` for a quick look).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time

import _common as bench
import numpy as np
import torch

from deepemocluster.config import load_config
from deepemocluster.transfer.finetune import pretrain, run_transfer

ROOT = bench.ROOT
LOSSES = ("contrastive", "relative")
FROZEN = (0, 2, -1)  # -1 = all but the last of the 5 encoder blocks
SHOTS = (5, 20)
KEYS = (
    "test/proto_accuracy",
    "test/proto_macro_f1",
    "test/knn_accuracy",
    "test/knn_macro_f1",
    "test/ccc_mean",
)
# Small enough for a shared 2-core machine: ~200 source utterances, 32 mels, a narrow encoder, one
# thread (on a busy machine, a second OpenMP thread mostly spins).
SETTINGS = [
    "data.format=demo",
    f"data.root={ROOT / 'runs' / 'siamese_transfer' / 'target'}",
    "data.demo.seed=2",
    "data.demo.n_train=240",
    "data.demo.n_dev=24",
    "data.demo.n_test=120",
    "data.demo.n_unlabelled=0",
    "data.demo.n_speakers=24",
    "transfer.source.format=demo",
    f"transfer.source.root={ROOT / 'runs' / 'siamese_transfer' / 'source'}",
    "transfer.source.demo.seed=1",
    "transfer.source.demo.n_train=200",
    "transfer.source.demo.n_dev=40",
    "transfer.source.demo.n_test=40",
    "transfer.source.demo.n_unlabelled=0",
    "transfer.source.demo.n_speakers=24",
    f"features.store={ROOT / 'runs' / 'features'}",
    "features.n_mels=32",
    "chunking.n_chunks=3",
    "model.channels=[8,8,16,16,32]",
    "model.strides=[1,2,2,2,2]",
    "model.embed_dim=64",
    "model.head_dim=64",
    "model.dropout=0.1",
    "model.aux_head=siamese",
    "siamese.embed_dim=32",
    "optim.main.lr=0.002",
    "train.epochs=10",
    "train.batch_utterances=16",
    "train.threads=1",  # measured: a 48-chunk step costs 6× less CPU on 1 thread than on 2 here
    "transfer.finetune_epochs=15",
    "transfer.finetune_lr=0.001",
    "transfer.knn=5",
    "tracking.experiment=siamese-transfer-benchmark",
]


def run_all(seeds: list[int], overrides: list[str], runs_dir: str) -> list[dict]:
    """Per seed: the untrained encoder, then per loss one pre-training and, per number of shots,
    the pre-trained encoder alone, the target-only fine-tune and a fine-tune per frozen depth."""
    runs: list[dict] = []

    def config(*extra: str):
        return load_config(
            overrides=[*SETTINGS, f"tracking.runs_dir={runs_dir}", *extra, *overrides]
        )

    def transfer(setting: str, loss: str, seed: int, shots: int, *extra: str) -> None:
        name = f"{setting}-{loss}-s{seed}-k{shots}-{len(runs)}"
        cfg = config(
            f"siamese.loss={loss}",
            f"train.seed={seed}",
            f"transfer.shots={shots}",
            f"tracking.run_name={name}",
            *extra,
        )
        start = time.perf_counter()
        metrics = run_transfer(cfg)
        runs.append(
            {
                "setting": setting,
                "loss": "-" if setting == "untrained" else loss,
                "seed": seed,
                "shots": shots,
                "freeze_blocks": cfg.transfer.freeze_blocks,
                "seconds": time.perf_counter() - start,
                **metrics,
            }
        )
        print(f"{name}: " + "  ".join(f"{k[5:]}={metrics[k]:.3f}" for k in KEYS), flush=True)

    scratch = ("transfer.pretrained_run=none", "transfer.freeze_blocks=0")
    for seed in seeds:
        for shots in SHOTS:
            untrained = ("transfer.pretrained_run=none", "transfer.finetune_epochs=0")
            transfer("untrained", "relative", seed, shots, *untrained)
        for loss in LOSSES:
            cfg = config(f"siamese.loss={loss}", f"train.seed={seed}")
            reuse = f"transfer.pretrained_run={pretrain(cfg, f'pretrain-{loss}-s{seed}').run_id}"
            for shots in SHOTS:
                transfer("pretrained_only", loss, seed, shots, reuse, "transfer.finetune_epochs=0")
                transfer("target_only", loss, seed, shots, *scratch)
                for frozen in FROZEN:
                    transfer(
                        "transfer", loss, seed, shots, reuse, f"transfer.freeze_blocks={frozen}"
                    )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, bench.RESULTS_DIR / "siamese_transfer.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs_dir:
        runs = run_all(args.seeds, args.overrides, runs_dir)
    result = {
        "seeds": args.seeds,
        "settings": [s.replace(str(ROOT), "<repo>") for s in SETTINGS],
        "overrides": args.overrides,
        "total_seconds": time.perf_counter() - began,
        "machine": {
            "python": platform.python_version(),
            "processor": bench.cpu_model(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "summary": _summary(runs),
        "runs": runs,
    }
    return bench.finish(result, args.out, lambda r: _print(r["summary"]))


def _summary(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds for every (setting, loss, frozen blocks, shots) group."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["setting"], r["loss"], r["freeze_blocks"], r["shots"]), []).append(r)
    return [
        {
            "setting": setting,
            "loss": loss,
            "freeze_blocks": frozen,
            "shots": shots,
            "n": len(rows),
            **{
                k[5:]: {
                    "mean": float(np.mean([r[k] for r in rows])),
                    "std": float(np.std([r[k] for r in rows])),
                }
                for k in KEYS
            },
        }
        for (setting, loss, frozen, shots), rows in groups.items()
    ]


def _print(summary: list[dict]) -> None:
    header = f"{'setting':<16}{'loss':<12}{'frozen':>7}{'k':>4}" + "".join(
        f"{k[5:]:>18}" for k in KEYS
    )
    print(header)
    for s in sorted(
        summary, key=lambda s: (s["shots"], s["setting"], s["loss"], s["freeze_blocks"])
    ):
        cells = "".join(f"{s[k[5:]]['mean']:>11.3f} ± {s[k[5:]]['std']:.3f}" for k in KEYS)
        print(f"{s['setting']:<16}{s['loss']:<12}{s['freeze_blocks']:>7}{s['shots']:>4}{cells}")


if __name__ == "__main__":
    sys.exit(main())
