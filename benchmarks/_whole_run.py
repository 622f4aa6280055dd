"""``paper_epoch.py --whole-run``: one whole tracked run, as ``python -m deepemocluster.train``
runs it (``training.run.run``), in a fresh process: set-up, the epochs, then the final stage
(Test, the final clustering with the best weights, the MLflow model, the analysis report). An
epoch timed alone cannot show what the final stage costs against it, nor the whole process's
peak memory; the run's own hooks tell when its last epoch ended."""

from __future__ import annotations

import time
from pathlib import Path

import _common as bench
from _encoder import amp_of
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from deepemocluster.config import resolve_path
from deepemocluster.data.corpus import load_corpus
from deepemocluster.data.manifest import UNLABELLED_SPLIT
from deepemocluster.tracking import resolve_uri
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.run import run

TARGETS = {"final_stage_over_epoch": 0.3, "peak_rss_gib": 1.0}


def overrides(folder: Path, counts: dict[str, int], n_mels: int) -> list[str]:
    """A demo corpus with ``counts`` utterances per split (real audio and features, what a
    user's run reads), its feature and MLflow stores in ``folder``; one epoch; the report on."""
    return [
        "data.format=demo",
        f"data.root={folder / 'demo'}",
        f"data.demo.n_train={counts['Train']}",
        f"data.demo.n_unlabelled={counts[UNLABELLED_SPLIT]}",
        f"data.demo.n_dev={counts['Development']}",
        f"data.demo.n_test={counts['Test1']}",
        f"features.store={folder / 'features'}",
        f"features.n_mels={n_mels}",
        f"tracking.runs_dir={folder / 'runs'}",
        "tracking.run_name=whole-run",
        "tracking.report=true",
        "train.epochs=1",
    ]


def prepare(cfg: DictConfig) -> float:
    """Generate the corpus and extract its features before the measured process starts, so
    its time and memory are the run's (a second run on the same corpus); returns the seconds."""
    began = time.perf_counter()
    load_corpus(cfg)
    return time.perf_counter() - began


class RunClock(Hooks):
    """When the MLflow run opened, when each epoch ended (its logged ``time/epoch_s``, the peak
    RSS so far) and which trainer phases ran after the last one."""

    def __init__(self) -> None:
        self.run_id = ""
        self.epochs: list[tuple[float, float, float]] = []  # (end, epoch_s, VmHWM MiB)
        self.phases: list[tuple[str, float, float]] = []  # (name, end, seconds)

    def on_run_start(self, run_id: str, run_dir: Path) -> None:
        self.run_id = run_id

    def on_phase(self, name: str, seconds: float) -> None:
        self.phases.append((name, time.perf_counter(), seconds))

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        hwm = bench.rss_now_mib()["VmHWM"]
        self.epochs.append((time.perf_counter(), metrics["time/epoch_s"], hwm))


def child(cfg: DictConfig) -> dict:
    """The run in this process (started for it alone), and its figures against ``TARGETS``."""
    clock, load_before = RunClock(), bench.load_average()
    began = time.perf_counter()
    with bench.RssSampler() as rss:
        test = run(cfg, "paper", hooks=[clock])
    ended = time.perf_counter()
    last_end, epoch_s, peak_at_epoch = clock.epochs[-1]
    final_s = ended - last_end
    phases: dict[str, float] = {}
    for name, end, seconds in clock.phases:
        if end > last_end:
            phases[name] = phases.get(name, 0.0) + seconds
    memory = {**rss.memory_mib(), "peak_rss_at_last_epoch_end": peak_at_epoch}
    uri = resolve_uri(cfg.tracking.uri, resolve_path(cfg.tracking.runs_dir))
    report = [a.path for a in MlflowClient(uri).list_artifacts(clock.run_id, "analysis")]
    ratio, peak_gib = final_s / epoch_s, memory["peak_rss"] / 1024
    return {
        "epochs": len(clock.epochs),
        "threads": cfg.train.threads,
        "amp": amp_of(cfg),
        "epoch_s": epoch_s,
        "final_stage_s": final_s,
        "final_stage_over_epoch": ratio,
        "final_stage_phases_s": phases,
        "setup_s": clock.epochs[0][0] - clock.epochs[0][1] - began,
        "total_s": ended - began,
        "report_artifacts": report,
        "test_ccc_mean": test["test/ccc_mean"],
        "memory_mib": memory,
        "peak_rss_gib": peak_gib,
        "targets": TARGETS,
        "verdicts": {
            "final_stage_at_most_0.3_of_epoch": ratio <= TARGETS["final_stage_over_epoch"],
            "peak_rss_at_most_1_gib": peak_gib <= TARGETS["peak_rss_gib"],
        },
        "loadavg_before": load_before,
        "loadavg_after": bench.load_average(),
    }


def report(r: dict, processor: str) -> None:
    m, v = r["memory_mib"], r["verdicts"]
    print(
        f"whole run ({processor}, {r['threads']} threads, amp {r['amp']}): set-up "
        f"{r['setup_s']:.1f} s, {r['epochs']} epoch {r['epoch_s']:.1f} s, final stage "
        f"{r['final_stage_s']:.1f} s = {r['final_stage_over_epoch']:.2f} of the epoch (target <= "
        f"{r['targets']['final_stage_over_epoch']}: {bench.met(v['final_stage_at_most_0.3_of_epoch'])})"
    )
    print(
        f"  peak RSS {m['peak_rss']:.0f} MiB (at the last epoch's end {m['peak_rss_at_last_epoch_end']:.0f}"
        f"; anonymous {m['peak_anon']:.0f}, file-backed {m['peak_file']:.0f}): target <= 1 GiB "
        f"{bench.met(v['peak_rss_at_most_1_gib'])}"
    )
