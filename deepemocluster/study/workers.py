"""Workers: each runs the study's trials until none is left to start and none runs elsewhere.

``--workers N`` starts N local processes (spawned, never forked: torch and faiss may already have
run OpenMP regions in this process) and splits the machine's cores between them. Workers on other
machines just run the same command against the same storage.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

from optuna.trial import TrialState

from deepemocluster.errors import DeepEmoClusterError, Interrupted, TrackingError
from deepemocluster.runtime.cli import exit_code
from deepemocluster.study.objective import Job, Objective, TrialFailed
from deepemocluster.study.store import (
    counted_trials,
    fail_dead_trials,
    open_study,
    planned_trials,
    queue_retry,
    running,
)

log = logging.getLogger("deepemocluster")
_POLL_S = 5  # how often a worker with nothing to start looks at the storage again


class WorkerFailed(DeepEmoClusterError):
    """A worker process ended with an error (its log above says which)."""


def work(job: Job, worker: int = 0) -> None:
    """Run trials until the study is complete. A signal (Interrupted) or an unreachable
    tracking store stops the worker after queueing its trial to run again."""
    study, _ = open_study(job.spec, job.params, job.storage, worker)
    objective = Objective(job)
    grid = job.spec.sampler == "grid"
    planned = planned_trials(job.spec, job.params)
    while True:
        fail_dead_trials(study)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and len(counted_trials(trials, grid)) >= planned:
            others = running(trials)
            if not others:
                return
            log.info(
                "waiting for trial(s) %s to finish or to be found dead",
                ", ".join(str(t.number) for t in others),
            )
            time.sleep(min(job.spec.heartbeat_s, _POLL_S))
            continue
        try:
            study.optimize(objective, n_trials=1)
        except TrialFailed as e:  # recorded on the trial; the study goes on
            log.error("%s", e)
        except (Interrupted, TrackingError):  # the trial is not to blame: it runs again
            if objective.current is not None:
                queue_retry(study, objective.current.number)
            raise


def run_workers(job: Job, n: int) -> None:
    """``work`` in this process (n = 1) or in n spawned processes sharing the cores."""
    if n == 1:
        work(job)
        return
    threads = max(1, len(os.sched_getaffinity(0)) // n)
    split = (f"train.threads={threads}", "cluster.threads=0", f"features.workers={threads}")
    job = replace(job, overrides=(*job.overrides, *split))
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker_main, args=(job, i, threads), name=f"study-worker-{i}")
        for i in range(n)
    ]
    log.info("%d workers, %d thread(s) each", n, threads)
    for p in procs:
        p.start()
    with _forwarding_signals(procs) as received:
        for p in procs:
            p.join()
    if received:
        raise Interrupted(received[0])
    failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
    if failed:
        raise WorkerFailed(f"worker(s) failed: {', '.join(failed)}; see the log above")


def _worker_main(job: Job, worker: int, threads: int) -> None:
    """Entry point of a spawned worker: its thread budget is set before torch is imported."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [worker {worker}] %(message)s",
        stream=sys.stderr,
    )
    sys.exit(exit_code(lambda: work(job, worker)))


@contextmanager
def _forwarding_signals(procs: list[multiprocessing.Process]):
    """SIGINT/SIGTERM to this process go on to the workers (each stops its trial at the next
    step and queues it again); the list names the signals received."""
    received: list[int] = []

    def forward(signum: int, frame) -> None:
        received.append(signum)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
