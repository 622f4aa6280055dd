"""Where a trained model keeps what it knows of each attribute, and how much of it the regressor
uses: the quality benchmark's ridge (``pooled_ridge.py``) refit on the labelled Train utterances'
means of each part the regressor reads (the encoder output, the chunk statistics, both) and on
the pooled statistics, scored on Test beside the model's own Test CCC. A part whose ridge is far
above the model holds what the regressor did not learn to use. Methods: benchmarks/README.md.

    python benchmarks/readout_probe.py RUN_FOLDER [RUN_FOLDER ...] [--out ...]
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import _common as bench
import numpy as np
import torch
from pooled_ridge import corpus_statistics, select_and_score

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.metrics import ccc_report
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.serving.inference import predict_utterances
from deepemocluster.statistics_ridge.fit import utterance_means
from deepemocluster.training.data import build_data

PARTS = ("embedding", "statistics", "embedding+statistics", "pooled statistics")


def utterance_parts(model: DeepEmoCluster, ds: ChunkDataset, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` utterances of ``ds``: the mean over each one's chunks of the encoder output
    and of the chunk statistics (what the ridge readout and the teacher read), (n, d) each;
    each chunk is read once."""
    model.eval()
    statistics = ChunkStatistics(ds.feature_dim)
    both = utterance_means(
        ds, np.arange(n), lambda x: torch.cat([model.encoder(x).float(), statistics(x)], dim=1)
    )
    return {
        "embedding": both[:, : -statistics.dim],
        "statistics": both[:, -statistics.dim :],
        "embedding+statistics": both,
    }


def probe(folder: Path) -> dict:
    """The model's Test CCC and each part's ridge, for one trained run."""
    cfg, model = Checkpoint.load(folder / "checkpoint_best.pt").restore_model()
    corpus = load_corpus(cfg)
    data = build_data(corpus, cfg)
    attributes = list(cfg.model.attributes)
    predicted = predict_utterances(
        model, data.test, cfg.train.eval_batch_chunks, torch.device("cpu")
    )
    own = ccc_report(
        data.ratings(data.test, attributes), data.scaler.restore(predicted), attributes
    )
    splits = {
        "train": (data.train, data.n_labelled, data.train.rows[: data.n_labelled]),
        "dev": (data.dev, len(data.dev), data.dev.rows),
        "test": (data.test, len(data.test), data.test.rows),
    }
    features, ratings = {}, {}
    for name, (ds, n, rows) in splits.items():
        features[name] = utterance_parts(model, ds, n)
        features[name]["pooled statistics"] = corpus_statistics(corpus, rows, cfg)
        ratings[name] = corpus.ratings(rows, attributes)
    ridge = {}
    for part in PARTS:
        train, dev, test = ((features[s][part], ratings[s]) for s in ("train", "dev", "test"))
        scores = select_and_score(train, dev, test, attributes)
        ridge[part] = {a: scores[a]["ccc"] for a in attributes}
        ridge[part]["mean"] = float(np.mean([scores[a]["ccc"] for a in attributes]))
    return {
        "run": str(folder),
        "label_fraction": cfg.data.label_fraction,
        "aux_head": cfg.model.aux_head,
        "statistics": bool(cfg.model.statistics),
        "seed": cfg.train.seed,
        "model": {k.removeprefix("ccc_"): v for k, v in own.items()},
        "ridge": ridge,
    }


def summarise(runs: list[dict]) -> dict:
    """Per (label fraction, auxiliary head): mean [95 % interval] over the runs of the model's
    CCC and of each part's ridge."""
    groups = defaultdict(list)
    for r in runs:
        groups[f"{r['label_fraction']} {r['aux_head']}"].append(r)
    out = {}
    for key, group in groups.items():
        rows = {"model": [r["model"] for r in group]}
        rows.update({part: [r["ridge"][part] for r in group] for part in PARTS})
        out[key] = {
            name: {k: _cell([s[k] for s in scores]) for k in scores[0]}
            for name, scores in rows.items()
        }
        out[key]["seeds"] = [r["seed"] for r in group]
    return out


def _cell(values: list[float]) -> dict:
    """Mean and 95 % interval; a single run has no interval."""
    return bench.interval(values) if len(values) > 1 else {"mean": values[0], "ci95": None}


def print_summary(summary: dict) -> None:
    for key, rows in summary.items():
        fraction, head = key.split()
        print(f"\nlabel fraction {fraction}, aux head {head}, seeds {rows['seeds']}: Test1 CCC")
        keys = [k for k in rows["model"] if k != "mean"] + ["mean"]
        print(f"{'':32s}" + "".join(f"{k:>11s}" for k in keys))
        for name in ("model", *PARTS):
            label = name if name == "model" else f"ridge on {name}"
            cells = "".join(f"{rows[name][k]['mean']:11.3f}" for k in keys)
            print(f"{label:32s}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = bench.parser(__doc__, bench.RESULTS_DIR / "readout_probe.json")
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    args = parser.parse_args(argv)
    load_before = bench.load_average()
    runs = [probe(folder) for folder in args.runs]
    result = {
        "benchmark": "readout_probe",
        "parts": list(PARTS),
        "runs": runs,
        "summary": summarise(runs),
        "machine": bench.machine_info(("torch", "numpy"), load_before),
    }
    return bench.finish(result, args.out, lambda r: print_summary(r["summary"]))


if __name__ == "__main__":
    raise SystemExit(main())
