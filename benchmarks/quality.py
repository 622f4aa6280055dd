"""Model quality: Test1 CCC of the model with and without clustering against classical anchors
(ridges on utterance features) and the strongest of them, the baseline, at several label
fractions and seeds, with paired differences.

Per label fraction and seed (one corpus, one feature store, one labelled subset): the anchors of
``ANCHORS`` (``ridge``: pooled log-mel statistics, ``pooled_ridge.py``; ``ridge_egemaps``:
opensmile's eGeMAPSv02 functionals, ``egemaps_ridge.py``, skipped where opensmile is missing),
``no_clustering`` (``model.aux_head=none``) and ``clustering`` (the config as it is), each model a
full training run; per fraction the mean over seeds with a 95 % t-interval and the paired
differences with theirs. ``baseline`` is, per fraction and attribute, the anchor with the highest
mean Test CCC (``BASELINE_RULE``). The JSON is rewritten after every run. Options
(``--corpus-seed``, ``--compare``, ``--jobs``): benchmarks/README.md.

    python benchmarks/quality.py [--quick] [--seeds 0 1 2] [--fractions 1.0 0.1]
        [--methods ridge ridge_egemaps no_clustering clustering] [--corpus-seed N]
        [--compare KEY=V1,V2,...] [--jobs N] [--out FILE] [key=value ...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import _common as bench
import egemaps_ridge
import numpy as np
from omegaconf import DictConfig
from pooled_ridge import STATISTICS, Features, corpus_statistics, ridge_scores

from deepemocluster.config import load_config
from deepemocluster.data.corpus import load_corpus
from deepemocluster.statistics_ridge.ridge import ALPHAS
from deepemocluster.training.run import run

CONFIG = bench.ROOT / "configs" / "default.yaml"


@dataclass(frozen=True)
class Anchor:
    """A classical anchor: the project's ridge (``pooled_ridge.ridge_scores``) on ``features``."""

    features: Features  # (corpus, rows, cfg) -> (len(rows), d)
    statistics: str  # what the features are, for the JSON
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here (None: it can)


# The anchors, by method name: a new one is one entry (its features function and description)
ANCHORS: dict[str, Anchor] = {
    "ridge": Anchor(corpus_statistics, STATISTICS),  # the name of earlier JSON files
    "ridge_egemaps": Anchor(
        egemaps_ridge.corpus_egemaps, egemaps_ridge.STATISTICS, egemaps_ridge.missing
    ),
}
MODELS = ("no_clustering", "clustering")
METHODS = (*ANCHORS, *MODELS)
BASELINE = "baseline"
BASELINE_RULE = (
    "per label fraction and attribute, the anchor with the highest mean Test1 CCC over the seeds "
    "(chosen on Test, which favours the baseline: the conservative side for a claim that the "
    "model beats it); mean = the mean over attributes of the chosen anchors' CCCs, per seed"
)
# (minuend, subtrahend): what the issue asks the model to win, then the earlier pairs
DIFFERENCES = (
    ("clustering", BASELINE),
    ("no_clustering", BASELINE),
    ("clustering", "ridge"),
    ("no_clustering", "ridge"),
    ("clustering", "no_clustering"),
)
# overrides that only say where things are: left out of the JSON
PATHS = ("data.root", "features.store", "tracking.runs_dir", "tracking.run_name")
QUICK = (*bench.TINY_RUN, "features.workers=1", "train.epochs=1", "train.threads=1")


def method_ccc(method: str, cfg: DictConfig, name: str) -> tuple[dict[str, float], dict]:
    """Test CCC per attribute (and their mean under ``mean``) of one method, and its details."""
    attributes = list(cfg.model.attributes)
    if method in ANCHORS:
        scores = ridge_scores(load_corpus(cfg), cfg, ANCHORS[method].features)
        result = {a: scores[a]["ccc"] for a in attributes}
        details = {
            "alpha": {a: scores[a]["alpha"] for a in attributes},
            "dev_ccc": {a: scores[a]["dev_ccc"] for a in attributes},
        }
    else:
        test = run(cfg, name)
        result = {a: test[f"test/ccc_{a}"] for a in attributes}
        details = {"best_epoch": int(test["best_epoch"])}
    return {**result, "mean": float(np.mean(list(result.values())))}, details


def plan(
    methods: list[str], compare: tuple[str, list[str]] | None
) -> list[tuple[str, str, list[str]]]:
    """(name, method, extra overrides) of each run per seed: each anchor once, each model method
    once per compared value."""
    if compare is None:
        return [(m, m, []) for m in methods]
    key, values = compare
    return [
        (m, m, []) if m in ANCHORS else (f"{m}[{v}]", m, [f"{key}={v}"])
        for m in methods
        for v in ([None] if m in ANCHORS else values)
    ]


def differences(names: list[str], compare: tuple[str, list[str]] | None) -> list[tuple[str, str]]:
    """The paired differences a summary reports (``names``: the runs, ``baseline`` among them
    where an anchor ran): what the issue asks the model to win and every other anchor against
    the log-mel ridge, or with ``compare``, every value against the first, clustering against no
    clustering at each value, and every model run against the log-mel ridge and the baseline."""
    anchors = [n for n in names if n in ANCHORS]
    against_ridge = [(n, "ridge") for n in anchors if n != "ridge" and "ridge" in names]
    if compare is None:
        return [pair for pair in DIFFERENCES if set(pair) <= set(names)] + against_ridge
    first = compare[1][0]
    pairs = [
        (n, n.replace(f"[{v}]", f"[{first}]"))
        for n in names
        for v in compare[1][1:]
        if n.endswith(f"[{v}]")
    ]
    pairs += [
        (f"clustering[{v}]", f"no_clustering[{v}]")
        for v in compare[1]
        if {f"clustering[{v}]", f"no_clustering[{v}]"} <= set(names)
    ]
    models = [n for n in names if n not in ANCHORS and n != BASELINE]
    pairs += [(n, "ridge") for n in models if "ridge" in names]
    pairs += [(n, BASELINE) for n in models if BASELINE in names]
    return pairs + against_ridge


def summarise(
    runs: list[dict],
    fraction: float,
    keys: list[str],
    methods: list[str],
    pairs: list[tuple[str, str]],
) -> dict:
    """Per method: mean and interval per key; the baseline (``BASELINE_RULE``) as a method of its
    own, with the anchor it took per attribute; per pair of methods: the paired differences; the
    ratio of each method's mean CCC to the log-mel ridge's and to the baseline's."""
    ran = [m for m in methods if m != BASELINE]
    at_fraction = [r for r in runs if r["fraction"] == fraction]
    scores = {m: {r["seed"]: r["ccc"] for r in at_fraction if r["method"] == m} for m in ran}
    seeds = sorted(set.intersection(*(set(s) for s in scores.values())))
    if len(seeds) < 2:
        return {}
    baseline = {}
    if BASELINE in methods:
        anchors = [m for m in ran if m in ANCHORS]
        dev = {
            m: {r["seed"]: r["dev_ccc"] for r in at_fraction if r["method"] == m} for m in anchors
        }
        scores[BASELINE], baseline = strongest_anchor(scores, dev, seeds, keys)
    summary = {
        m: {k: bench.interval([s[seed][k] for seed in seeds]) for k in keys}
        for m, s in scores.items()
    }
    differences = {}
    for a, b in pairs:
        per_seed = {k: [scores[a][seed][k] - scores[b][seed][k] for seed in seeds] for k in keys}
        differences[f"{a}-{b}"] = {
            k: {**bench.interval(d), "per_seed": d} for k, d in per_seed.items()
        }

    def ratios(to: str) -> dict[str, float]:
        reference = summary[to]["mean"]["mean"] if to in summary else 0.0
        return {m: summary[m]["mean"]["mean"] / reference for m in summary if reference > 0}

    return {
        "seeds": seeds,
        "methods": summary,
        "differences": differences,
        "ratio_to_ridge": ratios("ridge"),
        **({"baseline": baseline, "ratio_to_baseline": ratios(BASELINE)} if baseline else {}),
    }


def strongest_anchor(
    scores: dict[str, dict[int, dict[str, float]]],
    dev: dict[str, dict[int, dict[str, float]]],
    seeds: list[int],
    keys: list[str],
) -> tuple[dict[int, dict[str, float]], dict]:
    """The baseline's per-seed CCCs (``BASELINE_RULE``), and per attribute the anchor it took,
    the one Development would have taken (highest mean Dev CCC), and each anchor's mean Test CCC.
    A tie keeps the anchor listed first in ``ANCHORS``."""
    anchors = [m for m in ANCHORS if m in scores]
    attributes = [k for k in keys if k != "mean"]

    def best(table: dict, a: str) -> str:
        means = {m: np.mean([table[m][seed][a] for seed in seeds]) for m in anchors}
        return max(anchors, key=lambda m: (means[m], -anchors.index(m)))

    chosen = {a: best(scores, a) for a in attributes}
    per_seed = {}
    for seed in seeds:
        cells = {a: scores[chosen[a]][seed][a] for a in attributes}
        per_seed[seed] = {**cells, "mean": float(np.mean(list(cells.values())))}
    return per_seed, {
        "rule": BASELINE_RULE,
        "anchors": anchors,
        "anchor": chosen,
        "dev_choice": {a: best(dev, a) for a in attributes},
        "test_means": {
            m: {a: float(np.mean([scores[m][seed][a] for seed in seeds])) for a in attributes}
            for m in anchors
        },
    }


def configure(args: argparse.Namespace, workdir: Path) -> list[str]:
    """Overrides every run shares: the corpus (a second demo corpus beside the default one for
    ``--corpus-seed``; everything in ``workdir`` for ``--quick``), tracking in ``workdir``."""
    shared = [f"tracking.runs_dir={workdir / 'runs'}"]
    if args.quick:
        shared += [
            *QUICK,
            f"data.root={workdir / 'demo'}",
            f"features.store={workdir / 'features'}",
        ]
    if args.corpus_seed is not None:
        shared.append(f"data.demo.seed={args.corpus_seed}")
        if not args.quick:
            default_root = Path(load_config(CONFIG).data.root)
            shared.append(f"data.root={default_root}-seed{args.corpus_seed}")
    return shared + args.overrides


@dataclass(frozen=True)
class Task:
    """One run of the benchmark: a method at a label fraction and a seed."""

    fraction: float
    seed: int
    name: str  # the method, with the compared value: clustering[attention]
    method: str
    extra: list[str]  # the compared value's override
    overrides: list[str]  # all that load_config takes


def make_task(
    fraction: float,
    seed: int,
    planned: tuple[str, str, list[str]],
    shared: list[str],
    workdir: Path,
    threads: int | None,
) -> Task:
    """A task (``planned`` is one of ``plan``'s runs) with its own run folder and MLflow store
    (jobs run side by side), and with ``threads`` its share of ``train.threads`` (None: the
    config's)."""
    name, method, extra = planned
    run_name = f"quality-{name.replace('[', '-').rstrip(']')}-{fraction}-{seed}"
    overrides = [
        *shared,
        f"data.label_fraction={fraction}",
        f"train.seed={seed}",
        f"tracking.runs_dir={workdir / 'runs' / run_name}",
        f"tracking.run_name={run_name}",
        *extra,
        *(["model.aux_head=none"] if method == "no_clustering" else []),
        *([] if threads is None else [f"train.threads={threads}"]),
    ]
    return Task(fraction, seed, name, method, extra, overrides)


def run_task(task: Task) -> tuple[Task, dict[str, float], dict]:
    """Scores and details of one task, the seconds it took among the details."""
    began = time.perf_counter()
    scores, details = method_ccc(task.method, load_config(CONFIG, task.overrides), "quality")
    return task, scores, details | {"seconds": time.perf_counter() - began}


def run_tasks(tasks: list[Task], jobs: int, record: Callable[..., None]) -> None:
    """``record(task, scores, details)`` as each task finishes: the anchors in this process, the
    model runs here too or, with ``jobs`` > 1, in that many fresh processes."""
    if jobs == 1:
        for task in tasks:
            record(*run_task(task))
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
        models = [pool.submit(run_task, t) for t in tasks if t.method not in ANCHORS]
        for task in tasks:  # while the models train
            if task.method in ANCHORS:
                record(*run_task(task))
        for future in as_completed(models):
            record(*future.result())


def print_summary(summary: dict, keys: list[str]) -> None:
    for fraction, s in summary.items():
        if not s:
            continue
        print(f"\nlabel fraction {fraction}, seeds {s['seeds']}: Test1 CCC mean [95 % interval]")
        rows = list(s["methods"].items()) + list(s["differences"].items())
        width = max(26, *(len(name) + 1 for name, _ in rows))
        print(" " * width + "".join(f"{k:>22s}" for k in keys))
        for name, cells in rows:
            line = "".join(
                f"{c['mean']:>8.3f} [{c['ci95'][0]:>5.2f},{c['ci95'][1]:>5.2f}]"
                for c in (cells[k] for k in keys)
            )
            print(f"{name:{width}s}{line}")
        if "baseline" in s:
            chosen, dev = s["baseline"]["anchor"], s["baseline"]["dev_choice"]
            print(
                "baseline, the strongest anchor on Test: "
                + ", ".join(
                    f"{a} {m}" + ("" if dev[a] == m else f" (Development: {dev[a]})")
                    for a, m in chosen.items()
                )
            )
        for to in ("ridge", "baseline"):
            if s.get(f"ratio_to_{to}"):
                ratios = s[f"ratio_to_{to}"].items()
                print(f"mean CCC / {to}'s: " + ", ".join(f"{m} {r:.2f}" for m, r in ratios))


def arguments(argv: list[str] | None) -> tuple[argparse.Namespace, tuple[str, list[str]] | None]:
    """The parsed command line (seeds defaulted) and ``--compare`` as (key, values)."""
    parser = bench.parser(__doc__, None, "tiny corpus and models, 2 seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--corpus-seed", type=int, default=None, help="data.demo.seed")
    parser.add_argument("--compare", metavar="KEY=V1,V2", help="each model method per value")
    parser.add_argument("--jobs", type=int, default=1, help="model runs side by side")
    parser.add_argument("--out", type=Path, default=None, help="default results/quality.json")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    if len(args.seeds) < 2:
        parser.error("intervals need at least 2 seeds")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: need at least 1")
    if args.compare is None:
        return args, None
    key, _, values = args.compare.partition("=")
    if not key or len(values.split(",")) < 2 or "" in values.split(","):
        parser.error(f"--compare {args.compare}: expected KEY=V1,V2[,...]")
    return args, (key, values.split(","))


def available(methods: list[str]) -> tuple[list[str], dict[str, str]]:
    """The methods that can run here, in ``METHODS`` order, and why each anchor left out
    cannot (printed: the benchmark runs without it)."""
    skipped = {m: why for m in methods if m in ANCHORS and (why := ANCHORS[m].missing())}
    for m, why in skipped.items():
        print(f"{m}: skipped: {why}", file=sys.stderr)
    kept = [m for m in METHODS if m in methods and m not in skipped]
    if not kept:
        raise SystemExit("no method left to run")
    return kept, skipped


def main(argv: list[str] | None = None) -> int:
    args, compare = arguments(argv)
    methods, skipped = available(args.methods)
    runs_per_seed = plan(methods, compare)
    names = [name for name, _, _ in runs_per_seed]
    # the baseline is summarised from the anchors' runs: a method without runs of its own
    names_summarised = [*names, BASELINE] if set(methods) & set(ANCHORS) else names
    pairs = differences(names_summarised, compare)
    suffix = "" if args.corpus_seed is None else f"_corpus{args.corpus_seed}"
    out = args.out or bench.RESULTS_DIR / f"quality{suffix}.json"
    load_before, runs, summary = bench.load_average(), [], {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        shared = configure(args, Path(tmp))
        base = load_config(CONFIG, shared)
        keys = [*base.model.attributes, "mean"]
        load_corpus(base)  # generated and extracted once, before any job
        threads = max(1, base.train.threads // args.jobs) if args.jobs > 1 else None
        tasks = [
            make_task(fraction, seed, planned, shared, Path(tmp), threads)
            for fraction in args.fractions
            for seed in args.seeds
            for planned in runs_per_seed
        ]

        def record(task: Task, scores: dict, details: dict) -> None:
            compared = {"compared": task.extra} if compare else {}
            runs.append(
                {"fraction": task.fraction, "seed": task.seed, "method": task.name, "ccc": scores}
                | details
                | compared
            )
            print(f"{task.fraction} seed {task.seed} {task.name}: mean CCC {scores['mean']:.3f}")
            summary.update(
                {str(f): summarise(runs, f, keys, names_summarised, pairs) for f in args.fractions}
            )
            result = {
                "benchmark": "quality",
                "mode": bench.mode(args.quick),
                "config": "configs/default.yaml",
                "overrides": [o for o in shared if o.split("=")[0] not in PATHS],
                "compare": None if compare is None else {"key": compare[0], "values": compare[1]},
                "corpus_seed": base.data.demo.seed,
                "seeds": args.seeds,
                "fractions": args.fractions,
                "methods": names,
                "jobs": args.jobs,
                "ridge": {"statistics": STATISTICS, "alphas": list(ALPHAS)},
                "anchors": {m: ANCHORS[m].statistics for m in methods if m in ANCHORS},
                "skipped": skipped,
                "baseline_rule": BASELINE_RULE,
                "licence": {"ridge_egemaps": egemaps_ridge.LICENCE},
                "summary": summary,
                "runs": runs,
                "machine": bench.machine_info(("torch", "numpy", "opensmile"), load_before),
            }
            bench.write_results(result, out)

        run_tasks(tasks, args.jobs, record)
    print_summary(summary, keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
