"""Ridge regression on pooled log-mel statistics: the floor any model should beat on the demo corpus.

Each labelled utterance becomes a 256-d vector (per-mel-bin mean and std of the log-mel spectrogram);
a closed-form ridge regression per attribute is fit on Train (features standardised with Train
statistics), its alpha chosen on Development by CCC, and scored by CCC on Test1. The test suite
imports these functions, so this file is the single home of that baseline.

    python benchmarks/ridge_baseline.py [--root runs/demo_corpus] [--seed 0]

writes benchmarks/results/ridge_baseline.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from deepemocluster.config import ATTRIBUTES, DataConfig, DemoConfig, FeatureConfig
from deepemocluster.data.demo import generate_demo_corpus

ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
FALLBACK_ALPHA = 100.0  # used when the corpus has no Development split
RATING_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")  # arousal, valence, dominance
RESULTS = Path(__file__).resolve().parent / "results" / "ridge_baseline.json"


def ccc(truth: np.ndarray, pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    cov = np.mean((truth - truth.mean()) * (pred - pred.mean()))
    return float(2 * cov / (truth.var() + pred.var() + (truth.mean() - pred.mean()) ** 2 + 1e-12))


def pooled_logmel(path: Path, feat: FeatureConfig | None = None) -> np.ndarray:
    """Per-bin mean and std of the log-mel spectrogram of a peak-normalised file: (2 * n_mels,)."""
    feat = feat or FeatureConfig()
    audio, rate = sf.read(path, dtype="float32")
    audio = audio / (np.max(np.abs(audio)) + 1e-12)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=rate, n_fft=feat.n_fft, hop_length=feat.hop_length, n_mels=feat.n_mels
    )
    log_mel = np.log(mel + feat.log_offset)
    return np.concatenate([log_mel.mean(axis=1), log_mel.std(axis=1)])


def load_splits(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (features (n, 256), ratings (n, 3))} for every split in the MSP-Podcast label file."""
    rows: dict[str, list[dict]] = {}
    with (root / "Labels" / "labels_consensus.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["Split_Set"], []).append(row)
    return {
        split: (
            np.stack([pooled_logmel(root / "Audios" / r["FileName"]) for r in part]),
            np.array([[float(r[c]) for c in RATING_COLUMNS] for r in part]),
        )
        for split, part in rows.items()
    }


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """Closed-form ridge on Train-standardised features; returns what ``predict`` needs."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    y_mean = y.mean(axis=0)
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y_mean))
    return mean, std, weights, y_mean


def predict(model: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    mean, std, weights, y_mean = model
    return (x - mean) / std @ weights + y_mean


def ridge_baseline(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    train: str = "Train",
    dev: str = "Development",
    test: str = "Test1",
) -> dict[str, dict[str, float]]:
    """{attribute: {"ccc": test CCC, "alpha": chosen alpha, "dev_ccc": ...}} for A, V, D."""
    x_train, y_train = splits[train]
    models = {alpha: fit_ridge(x_train, y_train, alpha) for alpha in ALPHAS}
    out = {}
    for j, attribute in enumerate(ATTRIBUTES):
        if dev in splits and len(splits[dev][1]) > 1:
            x_dev, y_dev = splits[dev]
            dev_ccc = {a: ccc(y_dev[:, j], predict(m, x_dev)[:, j]) for a, m in models.items()}
            alpha = max(dev_ccc, key=dev_ccc.get)
        else:
            dev_ccc, alpha = {}, FALLBACK_ALPHA
            models.setdefault(alpha, fit_ridge(x_train, y_train, alpha))
        x_test, y_test = splits[test]
        out[attribute] = {
            "ccc": round(ccc(y_test[:, j], predict(models[alpha], x_test)[:, j]), 4),
            "alpha": alpha,
            "dev_ccc": round(dev_ccc.get(alpha, float("nan")), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(DataConfig().root))
    parser.add_argument("--seed", type=int, default=DemoConfig().seed)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cfg = replace(DemoConfig(), seed=args.seed)
    began = time.perf_counter()
    generate_demo_corpus(args.root, cfg)
    generated = time.perf_counter()
    splits = load_splits(args.root)
    scores = ridge_baseline(splits)
    for attribute, score in scores.items():
        print(
            f"{attribute:10s} test CCC {score['ccc']:.3f} (alpha {score['alpha']:g}, dev {score['dev_ccc']:.3f})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "demo_config": asdict(cfg),
        "features": "per-bin mean+std of log-mel (FeatureConfig defaults), peak-normalised audio",
        "sizes": {split: len(y) for split, (_, y) in splits.items()},
        "test_ccc": scores,
        "seconds": {
            "generate_or_reuse": round(generated - began, 1),
            "features_and_ridge": round(time.perf_counter() - generated, 1),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
