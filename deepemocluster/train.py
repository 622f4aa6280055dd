"""``python -m deepemocluster.train [--config FILE] [key=value ...]``: the DeepEmoCluster epoch loop.

Each epoch: embed every training chunk → k-means → fresh top layer → train the network on cluster
cross-entropy (all chunks) plus (1 − CCC) on the labelled chunks → evaluate on Development →
checkpoint. Exit code 0 only on success; an interrupted run resumes with ``train.resume=true``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepemocluster import clustering, distributed
from deepemocluster.checkpoint import load_checkpoint, save_checkpoint
from deepemocluster.config import flatten, load_config, resolve_path, to_yaml
from deepemocluster.data.corpus import Corpus, load_corpus
from deepemocluster.data.datasets import ChunkBatches, ChunkDataset
from deepemocluster.data.manifest import UNLABELLED_SPLIT
from deepemocluster.data.pairs import NO_LABEL, pair_labels, sample_pairs
from deepemocluster.data.samplers import (
    ShardedBatches,
    ShuffledBatchSampler,
    UniformClusterSampler,
)
from deepemocluster.engine import (
    LabelScaler,
    ccc_report,
    embed_chunks,
    predict_utterances,
)
from deepemocluster.errors import (
    CheckpointError,
    ConfigError,
    DeepEmoClusterError,
    ManifestError,
    TooManyBadFilesError,
    TrackingError,
    TrainingError,
)
from deepemocluster.heap import releases_free_heap
from deepemocluster.losses import ccc_loss, contrastive_loss, relative_distance_loss
from deepemocluster.metrics import nmi
from deepemocluster.microbatch import SplitStep
from deepemocluster.model import DeepEmoCluster, build_model
from deepemocluster.model.siamese import pair_distance
from deepemocluster.tracking import Tracker, resolve_uri

log = logging.getLogger("deepemocluster")
LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


class Interrupted(DeepEmoClusterError):
    """SIGINT/SIGTERM arrived; the last epoch's checkpoint is intact."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


@dataclass
class Data:
    """What the loop trains and evaluates on. ``train`` holds labelled Train utterances first
    (z-normalised targets), then unlabelled ones (NaN targets). ``pair_labels`` (Siamese head
    only) says which ``train`` utterances make a "same" pair (−1: none)."""

    corpus: Corpus
    train: ChunkDataset
    n_labelled: int
    dev: ChunkDataset
    test: ChunkDataset
    scaler: LabelScaler
    pair_labels: np.ndarray | None = None

    @property
    def labelled_chunks(self) -> np.ndarray:
        return np.arange(self.n_labelled * self.train.n_chunks)

    @property
    def unlabelled_chunks(self) -> np.ndarray:
        return np.arange(self.n_labelled * self.train.n_chunks, self.train.n_total_chunks)


def build_data(corpus: Corpus, cfg: DictConfig) -> Data:
    splits, attrs = cfg.data.splits, list(cfg.model.attributes)
    labelled = corpus.rows(splits.train, labelled=True)
    unlabelled = np.array(
        [i for i, u in enumerate(corpus.manifest) if u.split == UNLABELLED_SPLIT or not u.labelled],
        dtype=np.int64,
    )
    if len(labelled) == 0:
        raise ManifestError(f"no labelled utterance of split {splits.train!r} has usable audio")
    scaler = LabelScaler.fit(corpus.ratings(labelled, attrs))
    targets = np.concatenate(
        [
            scaler.normalise(corpus.ratings(labelled, attrs)),
            np.full((len(unlabelled), len(attrs)), np.nan),
        ]
    )

    def dataset(rows: np.ndarray, targets: np.ndarray | None = None) -> ChunkDataset:
        c = cfg.chunking
        return ChunkDataset(
            corpus.packed, rows, corpus.mean, corpus.std, c.n_chunks, c.frames, c.clip, targets
        )

    dev, test = corpus.rows(splits.dev, labelled=True), corpus.rows(splits.test, labelled=True)
    for name, rows in (("dev", dev), ("test", test)):
        if len(rows) < 2:
            raise ConfigError(
                f"data.splits.{name}: need ≥ 2 labelled utterances, found {len(rows)}"
            )
    longest = int(corpus.packed.lengths[labelled].max())
    if cfg.chunking.frames > longest:
        raise ConfigError(
            f"chunking.frames={cfg.chunking.frames} is longer than the longest labelled "
            f"{splits.train} utterance ({longest} frames): every chunk would be mostly padding"
        )
    if cfg.cluster.enabled and cfg.model.aux_head == "cluster":
        n_chunks = (len(labelled) + len(unlabelled)) * cfg.chunking.n_chunks
        if cfg.cluster.k > n_chunks:
            raise ConfigError(
                f"cluster.k={cfg.cluster.k} is larger than the {n_chunks} training chunks"
            )
    return Data(
        corpus,
        dataset(np.concatenate([labelled, unlabelled]), targets),
        len(labelled),
        dataset(dev),
        dataset(test),
        scaler,
        _train_pair_labels(corpus, labelled, len(unlabelled), cfg)
        if cfg.model.aux_head == "siamese"
        else None,
    )


def _train_pair_labels(
    corpus: Corpus, labelled: np.ndarray, n_unlabelled: int, cfg: DictConfig
) -> np.ndarray:
    """Pair labels of the labelled Train utterances, −1 for the unlabelled ones after them."""
    s = cfg.siamese
    labels = pair_labels(
        [corpus.manifest[r] for r in labelled], s.pair_label, s.bin_attribute, s.bin_edges
    )
    counts = np.bincount(labels[labels >= 0])
    if (counts > 0).sum() < 2 or counts.max() < 2:
        raise ConfigError(
            f"siamese.pair_label={s.pair_label}: the labelled Train utterances need ≥ 2 "
            f"groups and one with ≥ 2 utterances to form pairs, got sizes {counts[counts > 0]}"
        )
    return np.concatenate([labels, np.full(n_unlabelled, NO_LABEL, dtype=np.int64)])


def make_optimizer(spec: DictConfig, params) -> torch.optim.Optimizer | None:
    params = list(params)
    if spec.name == "none" or not params:
        return None
    if spec.name == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


class Loop:
    """State of one training run and the steps of its epochs."""

    def __init__(
        self,
        cfg: DictConfig,
        data: Data,
        device: torch.device,
        run_dir: Path,
        world: distributed.World | None = None,
    ) -> None:
        self.cfg, self.data, self.device, self.run_dir = cfg, data, device, run_dir
        self.world = world or distributed.World()
        torch.manual_seed(cfg.train.seed)
        self.model: DeepEmoCluster = build_model(cfg, data.corpus.packed.frames.shape[1]).to(device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        body = [p for n, p in self.model.named_parameters() if not n.startswith("cluster.top.")]
        self.optimizers = {
            name: opt
            for name in ("main", "second")
            if (opt := make_optimizer(cfg.optim[name], body)) is not None
        }
        self.epoch, self.best_score, self.best_epoch, self.bad_epochs = 0, -np.inf, 0, 0
        self.prev_assignments: np.ndarray | None = None
        self.stop_signal: int | None = None

    @property
    def clusters(self) -> bool:
        return self.model.cluster is not None

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, run_id: str) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "torch_rng": torch.get_rng_state(),
            "best_score": float(self.best_score),
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "prev_assignments": None
            if self.prev_assignments is None
            else torch.from_numpy(self.prev_assignments),
            "run_id": run_id,
            "config_yaml": to_yaml(self.cfg),
            "label_mean": torch.from_numpy(self.data.scaler.mean),
            "label_std": torch.from_numpy(self.data.scaler.std),
            "feature_mean": torch.from_numpy(self.data.corpus.mean),
            "feature_std": torch.from_numpy(self.data.corpus.std),
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.best_epoch, self.bad_epochs = (
            state["epoch"],
            state["best_epoch"],
            state["bad_epochs"],
        )
        self.best_score = state["best_score"]
        prev = state["prev_assignments"]
        self.prev_assignments = None if prev is None else prev.numpy()

    # --- one epoch ---------------------------------------------------------------------------
    def run_epoch(self) -> dict[str, float]:
        cfg, data = self.cfg, self.data
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        if not self.clusters:
            batches = ShuffledBatchSampler(
                data.labelled_chunks, self._batch_chunks, self._seed(), data.train.n_total_chunks
            )
            metrics.update(self._train(batches, labels=None))
        elif cfg.cluster.mode == "joint":
            everything = np.arange(data.train.n_total_chunks)
            labels, cluster_metrics = self._recluster(everything)
            metrics.update(cluster_metrics)
            metrics.update(
                self._train(
                    UniformClusterSampler(everything, labels, self._batch_chunks, self._seed()),
                    labels,
                )
            )
        else:  # two_stage: the reference's unlabelled stage, then its labelled stage
            for stage, ids in (
                ("unlabelled", data.unlabelled_chunks),
                ("labelled", data.labelled_chunks),
            ):
                if len(ids) < cfg.cluster.k:
                    continue
                labels, cluster_metrics = self._recluster(ids, stage)
                metrics.update(
                    {
                        f"{k}_{stage}" if stage == "unlabelled" else k: v
                        for k, v in cluster_metrics.items()
                    }
                )
                sampler = UniformClusterSampler(
                    ids, labels[ids], self._batch_chunks, self._seed(stage)
                )
                stage_metrics = self._train(sampler, labels)
                metrics.update(
                    {
                        f"{k}_{stage}" if stage == "unlabelled" else k: v
                        for k, v in stage_metrics.items()
                    }
                )
        metrics.update({f"dev/{k}": v for k, v in self._evaluate_dev().items()})
        metrics["time/epoch_s"] = time.perf_counter() - t0
        return metrics

    @releases_free_heap
    def _evaluate_dev(self) -> dict[str, float]:
        """Development CCC, computed on rank 0 and shared, so every rank takes the same
        best-epoch and patience decisions."""
        report = None
        if self.world.is_main:
            pred = predict_utterances(self.model, self.data.dev, self._eval_chunks, self.device)
            report = ccc_report(
                self._ratings(self.data.dev),
                self.data.scaler.restore(pred),
                list(self.cfg.model.attributes),
            )
        return distributed.broadcast_object(report, self.world)

    @releases_free_heap
    def _recluster(
        self, ids: np.ndarray, stage: str = "joint"
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Cluster the embeddings of chunks ``ids``; returns labels indexed by global chunk id.
        Under torchrun each rank embeds its shard and rank 0 clusters them all."""
        t0 = time.perf_counter()
        c, world = self.cfg.cluster, self.world
        shard = distributed.shard(ids, world)
        emb = distributed.gather_rows(
            embed_chunks(
                self.model,
                self.data.train,
                self._eval_chunks,
                self.device,
                shard,
                self.cfg.train.amp,
            ),
            world,
        )
        metrics: dict[str, float] = {}
        result = None
        if world.is_main:
            result = clustering.cluster(
                emb, c.k, c.iterations, self._seed(stage), c.pca_dim, c.l2_normalize
            )
            sizes = result.sizes
            metrics = {
                "cluster/empty": float(result.n_empty),
                "cluster/size_cv": float(sizes.std() / max(sizes.mean(), 1e-9)),
            }
        assignments = distributed.broadcast_array(
            None if result is None else result.assignments, len(ids), world
        )
        if world.enabled:
            log.info(
                "epoch %d %s assignments %s (rank %d of %d)",
                self.epoch + 1,
                stage,
                distributed.digest(assignments),
                world.rank,
                world.size,
            )
        self.model.cluster.reset_top(c.k)
        self.top_optimizer = make_optimizer(self.cfg.optim.top, self.model.cluster.top.parameters())
        labels = np.full(self.data.train.n_total_chunks, -1, dtype=np.int64)
        labels[ids] = assignments
        metrics["time/cluster_s"] = time.perf_counter() - t0
        if stage != "unlabelled":
            if self.prev_assignments is not None and len(self.prev_assignments) == len(ids):
                metrics["cluster/nmi"] = nmi(self.prev_assignments, assignments)
            self.prev_assignments = assignments
            if world.is_main:
                self._save_assignments(assignments)
        return labels, metrics

    def final_clustering(self) -> dict:
        """Cluster the training chunks once more with the current (best) weights: the clusters
        that prediction and analysis refer to. Returned as plain tensors for the checkpoint."""
        c = self.cfg.cluster
        emb = embed_chunks(self.model, self.data.train, self._eval_chunks, self.device)
        result = clustering.cluster(
            emb, c.k, c.iterations, self._seed("final"), c.pca_dim, c.l2_normalize
        )
        np.savez_compressed(
            self.run_dir / "assignments" / "final.npz",
            assignments=result.assignments.astype(np.int32),
        )
        p = result.projection
        return {
            "centroids": torch.from_numpy(result.centroids),
            "projection_matrix": None if p.matrix is None else torch.from_numpy(p.matrix),
            "projection_bias": None if p.bias is None else torch.from_numpy(p.bias),
            "l2_normalize": p.l2_normalize,
        }

    @releases_free_heap
    def _train(self, batches, labels: np.ndarray | None) -> dict[str, float]:
        """One pass over ``batches`` of chunk ids: cluster cross-entropy on every chunk (when
        ``labels`` is given) or the Siamese pair loss on pairs of its labelled chunks, plus
        weighted (1 − CCC) on the labelled chunks of the batch."""
        cfg, model = self.cfg.train, self.model
        model.train()
        net = distributed.wrap(model, self.world)  # the model itself outside torchrun
        if self.world.enabled:
            batches = ShardedBatches(batches, self.world.rank, self.world.size)
        optimizers = list(self.optimizers.values()) + (
            [self.top_optimizer] if labels is not None else []
        )
        pair_rng = np.random.default_rng(self._seed("pairs"))
        sums: dict[str, list[float]] = {
            "train/loss_ce": [],
            "train/loss_pair": [],
            "train/loss_ccc": [],
        }
        split = SplitStep(model, net, cfg.micro_batch_chunks, self.device, cfg.amp)
        for step, (x, ids) in enumerate(self._loader(batches)):
            if self.stop_signal is not None:
                raise Interrupted(self.stop_signal)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            learnt = self._learn(split, x, ids, labels, pair_rng)
            if learnt is None:  # nothing to learn from this batch
                continue
            total, losses = learnt
            if not math.isfinite(total):
                raise TrainingError(
                    f"loss is {total} at epoch {self.epoch + 1}, step {step + 1} ("
                    + ", ".join(f"{k.removeprefix('train/')} {v}" for k, v in losses.items())
                    + ")"
                )
            for name, value in losses.items():
                sums[name].append(value)
            for opt in optimizers:
                opt.step()
        distributed.sync_buffers(model, self.world)
        return {k: float(np.mean(v)) for k, v in sums.items() if v}

    def _learn(
        self,
        split: SplitStep,
        x: torch.Tensor,
        ids: torch.Tensor,
        labels: np.ndarray | None,
        pair_rng: np.random.Generator,
    ) -> tuple[float, dict[str, float]] | None:
        """Forward and backward of one batch's loss: its value and its terms' (unweighted), or
        None when the batch has nothing to learn from."""
        cfg = self.cfg.train
        y = self.data.train.targets[ids // self.data.train.n_chunks].to(self.device)
        rated = ~torch.isnan(y[:, 0])
        with_ccc = int(rated.sum()) >= 2
        if labels is not None:
            clusters = torch.from_numpy(labels[ids.numpy()]).to(self.device)
            if not with_ccc and self.model.siamese is None:
                # the cross-entropy alone is a mean over chunks: one pass per micro-batch
                ce = split.per_chunk(
                    x, lambda out, rows: F.cross_entropy(out[0], clusters[rows]), cfg.ce_weight
                ).item()
                return cfg.ce_weight * ce, {"train/loss_ce": ce}
        aux, pred = split.forward(x)
        loss, losses = torch.zeros((), device=self.device), {}
        if labels is not None:
            ce = F.cross_entropy(aux, clusters)
            loss = loss + cfg.ce_weight * ce
            losses["train/loss_ce"] = ce.item()
        if (
            self.model.siamese is not None
            and (lp := self._pair_loss(aux, ids, pair_rng)) is not None
        ):
            loss = loss + self.cfg.siamese.weight * lp
            losses["train/loss_pair"] = lp.item()
        if with_ccc:
            lc = ccc_loss(pred[rated], y[rated])
            loss = loss + cfg.ccc_weight * lc
            losses["train/loss_ccc"] = lc.item()
        if not loss.requires_grad:
            if not self.world.enabled:
                return None
            loss = pred.sum() * 0.0  # under DDP every rank must join every step's all-reduce
        split.backward(loss)
        return loss.item(), losses

    def _pair_loss(
        self, z: torch.Tensor, ids: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor | None:
        """Pair loss over balanced same/different pairs of the batch's labelled chunks (each
        pair spans two utterances); None when the batch allows no pair of one kind."""
        s = self.cfg.siamese
        utterances = ids.numpy() // self.data.train.n_chunks
        pairs = sample_pairs(
            self.data.pair_labels[utterances], s.pairs_per_batch, rng, owners=utterances
        )
        if pairs is None:
            return None
        left, right, same = pairs
        distance = pair_distance(z[left], z[right], s.distance)
        same = torch.from_numpy(same).to(self.device)
        if s.loss == "contrastive":
            return contrastive_loss(distance, same, s.margin)
        return relative_distance_loss(distance[same], distance[~same])

    def _loader(self, batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            ChunkBatches(self.data.train),
            sampler=batches,
            batch_size=None,
            num_workers=self.cfg.train.loader_workers,
        )
        interactive = sys.stderr.isatty()
        return tqdm(loader, desc=f"epoch {self.epoch + 1}", leave=False, disable=not interactive)

    def _ratings(self, ds: ChunkDataset) -> np.ndarray:
        return self.data.corpus.ratings(ds.rows, list(self.cfg.model.attributes))

    def _seed(self, stage: str = "") -> int:
        return (
            self.cfg.train.seed * 100_003
            + (self.epoch + 1) * 17
            + {"": 0, "joint": 1, "unlabelled": 2, "labelled": 3, "final": 4, "pairs": 5}[stage]
        )

    @property
    def _batch_chunks(self) -> int:
        return self.cfg.train.batch_utterances * self.cfg.chunking.n_chunks

    @property
    def _eval_chunks(self) -> int:
        return self.cfg.train.eval_batch_chunks

    def _save_assignments(self, assignments: np.ndarray) -> None:
        path = self.run_dir / "assignments" / f"epoch_{self.epoch + 1:03d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, assignments=assignments.astype(np.int32))


# --- the run -----------------------------------------------------------------------------------
def run(
    cfg: DictConfig, config_name: str = "default", parent_run_id: str | None = None
) -> dict[str, float]:
    """Train, evaluate and track one run (an MLflow child of ``parent_run_id`` when given, e.g.
    the pre-training of a transfer run); returns the final test metrics (rank 0; other torchrun
    ranks return an empty dict once the epochs are done)."""
    torch.set_num_threads(cfg.train.threads)
    clustering.set_threads(cfg.cluster.threads or cfg.train.threads)
    world, device = distributed.init(
        select_device(cfg.train.device, cfg.train.amp), cfg.train.dist_timeout_min
    )
    try:
        if not world.is_main:
            return _follow(cfg, device, world)
        return _lead(cfg, config_name, parent_run_id, device, world)
    finally:
        distributed.shutdown(world)


def _lead(
    cfg: DictConfig,
    config_name: str,
    parent_run_id: str | None,
    device: torch.device,
    world: distributed.World,
) -> dict[str, float]:
    """The run as rank 0 (or the only process) does it: run folder, tracking, final stage."""
    runs_dir = resolve_path(cfg.tracking.runs_dir)
    run_name = cfg.tracking.run_name or f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = runs_dir / run_name
    with _stop_on_signals() as stop:
        # The store first: an unreachable server leaves no run folder behind, so the very same
        # command works once the server is up.
        runs_dir.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(
            resolve_uri(cfg.tracking.uri, runs_dir),
            cfg.tracking.experiment,
            runs_dir / "artifacts",
            cfg.tracking.connect_timeout_s,
        )
        resume_state = _prepare_run_dir(cfg, run_dir)
        _log_to_file(run_dir / "train.log")
        run_id = tracker.start(run_name, run_id=_saved_run_id(run_dir), parent_run_id=parent_run_id)
        resume_hint = f"train.resume=true tracking.run_name={run_name}"
        try:
            _write_atomic(
                run_dir / "run.json", json.dumps({"run_id": run_id, "run_name": run_name})
            )
            log.info("run %s (MLflow run %s, store %s)", run_name, run_id, tracker.uri)
            tracker.log_params(flatten(cfg))
            test = _train_and_test(cfg, run_dir, run_id, tracker, device, resume_state, stop, world)
            tracker.end("FINISHED")
        except Interrupted:
            _end_quietly(tracker, "KILLED")
            log.error("to resume: the same command with %s", resume_hint)
            raise
        except TrackingError as e:
            _end_quietly(tracker, "FAILED")
            raise TrackingError(
                f"{e}\nThe checkpoints in {run_dir} are intact ({_progress(run_dir)}); once the "
                f"tracking store is reachable again, resume with the same command plus {resume_hint}"
            ) from e
        except BaseException:
            _end_quietly(tracker, "FAILED")
            raise
    return test


def _train_and_test(
    cfg: DictConfig,
    run_dir: Path,
    run_id: str,
    tracker: Tracker,
    device: torch.device,
    resume_state: dict | None,
    stop: _stop_on_signals,
    world: distributed.World,
) -> dict[str, float]:
    try:
        corpus = load_corpus(cfg)
    except TooManyBadFilesError as e:  # the list is what the user needs to fix the data
        _write_skipped(run_dir / "skipped.csv", e.skipped)
        try:
            tracker.log_artifact(run_dir / "skipped.csv")
        except TrackingError as te:
            log.warning("%s", te)
        raise TooManyBadFilesError(
            f"{e}; all listed in {run_dir / 'skipped.csv'}", e.skipped
        ) from e
    data = build_data(corpus, cfg)
    _write_skipped(run_dir / "skipped.csv", corpus.skipped)
    tracker.set_tags(
        {
            "git_commit": _git_commit(),
            "data_fingerprint": corpus.fingerprint,
            "run_dir": str(run_dir),
        }
    )
    tracker.log_artifact(run_dir / "config.yaml")
    tracker.log_artifact(run_dir / "skipped.csv")
    (run_dir / "utterances.txt").write_text(
        "\n".join(corpus.manifest[r].id for r in data.train.rows) + "\n"
    )
    log.info(
        "data: %d labelled + %d unlabelled training utterances, %d dev, %d test, %d skipped files",
        data.n_labelled,
        len(data.train) - data.n_labelled,
        len(data.dev),
        len(data.test),
        len(corpus.skipped),
    )

    distributed.barrier(world)  # the other ranks load the corpus once features are extracted
    loop = Loop(cfg, data, device, run_dir, world)
    distributed.broadcast_object((resume_state, run_dir), world)
    if resume_state is not None:
        loop.restore(resume_state)
        log.info("resumed after epoch %d", loop.epoch)

    def finish_epoch(metrics: dict[str, float], improved: bool) -> None:
        if improved:
            save_checkpoint(loop.state(run_id), run_dir / BEST)
        # Logged before checkpoint_last: when logging fails, resume repeats (and logs) this
        # epoch with identical numbers instead of losing its metrics.
        tracker.log_metrics(metrics, step=loop.epoch)
        if loop.clusters:
            tracker.log_artifact(
                run_dir / "assignments" / f"epoch_{loop.epoch:03d}.npz", "assignments"
            )
        save_checkpoint(loop.state(run_id), run_dir / LAST)
        log.info("epoch %d/%d  %s", loop.epoch, cfg.train.epochs, _format(metrics))

    _run_epochs(loop, stop, finish_epoch)

    best = load_checkpoint(run_dir / BEST)
    loop.model.load_state_dict(best["model"])
    test_pred = data.scaler.restore(
        predict_utterances(loop.model, data.test, cfg.train.eval_batch_chunks, device)
    )
    test = {
        f"test/{k}": v
        for k, v in ccc_report(
            loop._ratings(data.test), test_pred, list(cfg.model.attributes)
        ).items()
    }
    test["best_epoch"] = float(loop.best_epoch)
    tracker.log_metrics(test)
    if loop.clusters:
        best["clustering"] = loop.final_clustering()
        save_checkpoint(best, run_dir / BEST)
        tracker.log_artifact(run_dir / "assignments" / "final.npz", "assignments")
    tracker.log_artifact(run_dir / BEST, "checkpoints")
    tracker.log_artifact(run_dir / "utterances.txt", "assignments")
    # imported here: plotting and the report are needed only once, at the very end
    from deepemocluster import pyfunc
    from deepemocluster.analyze import analyze

    pyfunc.log_model(run_dir / BEST, list(cfg.model.attributes))
    if loop.clusters:
        try:  # the report is a by-product: it must not turn a finished training into a failure
            analyze(run_id, tracking_uri=tracker.uri, corpus=corpus)
        except Interrupted:
            raise
        except Exception:
            log.exception("analysis failed; retry: python -m deepemocluster.analyze %s", run_id)
    tracker.log_artifact(run_dir / "train.log")
    log.info("done: best epoch %d, %s", loop.best_epoch, _format(test))
    return test


def _follow(cfg: DictConfig, device: torch.device, world: distributed.World) -> dict[str, float]:
    """The run as a torchrun rank other than 0 does it: the same epochs, with no files, no
    tracking and no final stage (rank 0 does those)."""
    with _stop_on_signals() as stop:
        distributed.barrier(world)  # rank 0 has extracted the features
        data = build_data(load_corpus(cfg), cfg)
        resume_state, run_dir = distributed.broadcast_object(None, world)
        loop = Loop(cfg, data, device, run_dir, world)
        if resume_state is not None:
            loop.restore(resume_state)
        _run_epochs(loop, stop, lambda metrics, improved: None)
    return {}


def _run_epochs(
    loop: Loop, stop: _stop_on_signals, finish_epoch: Callable[[dict[str, float], bool], None]
) -> None:
    """Epochs until ``train.epochs`` or patience runs out; ``finish_epoch(metrics, improved)``
    records each one. Every rank runs this with identical decisions (dev metrics are shared)."""
    cfg = loop.cfg
    stop.loop = loop  # in the loop a signal sets a flag, checked between steps and epochs
    try:
        while loop.epoch < cfg.train.epochs and not _patience_exhausted(loop, cfg):
            stop.check()
            metrics = loop.run_epoch()
            loop.epoch += 1
            improved = metrics["dev/ccc_mean"] > loop.best_score
            if improved:
                loop.best_score, loop.best_epoch, loop.bad_epochs = (
                    metrics["dev/ccc_mean"],
                    loop.epoch,
                    0,
                )
            else:
                loop.bad_epochs += 1
            finish_epoch(metrics, improved)
    finally:
        stop.loop = None
    stop.check()


def _prepare_run_dir(cfg: DictConfig, run_dir: Path) -> dict | None:
    """New run: create the folder. Resume: check the config is unchanged, return the checkpoint."""
    saved_cfg, last = run_dir / "config.yaml", run_dir / LAST
    if cfg.train.resume and not cfg.tracking.run_name:
        raise ConfigError("train.resume=true needs tracking.run_name=<the run to continue>")
    if saved_cfg.exists():
        if not cfg.train.resume:
            raise ConfigError(
                f"run folder {run_dir} exists: pass train.resume=true to continue it, "
                "or choose another tracking.run_name"
            )
        old, new = flatten(OmegaConf.load(saved_cfg)), flatten(cfg)
        changed = sorted(
            k for k in old.keys() | new.keys() if k != "train.resume" and old.get(k) != new.get(k)
        )
        if changed:
            raise ConfigError(
                f"resume with a changed config is refused (params are immutable): {', '.join(changed)}"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.tmp"):  # half-written by a killed process, never read
        stale.unlink(missing_ok=True)
    _write_atomic(saved_cfg, to_yaml(cfg))
    return load_checkpoint(last) if cfg.train.resume and last.exists() else None


def _saved_run_id(run_dir: Path) -> str | None:
    meta = run_dir / "run.json"
    return json.loads(meta.read_text())["run_id"] if meta.exists() else None


def _patience_exhausted(loop: Loop, cfg: DictConfig) -> bool:
    return cfg.train.patience > 0 and loop.bad_epochs >= cfg.train.patience


class _stop_on_signals:
    """SIGINT/SIGTERM during the whole run. The first one inside the epoch loop (``loop`` set)
    sets a flag that the loop checks between steps and epochs, so an epoch in flight ends at a
    step boundary; any other raises Interrupted at once. Either way nothing half-written is ever
    read back: checkpoints, feature entries and run files are written to a temporary name and
    renamed. Installed only in the main thread (Python delivers signals there)."""

    def __init__(self) -> None:
        self.loop: Loop | None = None
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> _stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            self.previous = {
                s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
            }
        return self

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = signum
        if first and self.loop is not None:
            self.loop.stop_signal = signum
            return
        raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _end_quietly(tracker: Tracker, status: str) -> None:
    """Close the MLflow run after a failure without masking that failure (the store may be the
    thing that is gone)."""
    try:
        tracker.end(status)
    except TrackingError as e:
        log.warning("%s", e)


def _progress(run_dir: Path) -> str:
    """How far the checkpoints in ``run_dir`` go, for error messages."""
    try:
        return f"last finished epoch {load_checkpoint(run_dir / LAST)['epoch']}"
    except (CheckpointError, KeyError):
        return "no epoch finished yet"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def select_device(name: str, amp: bool = False) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available")
    if name == "cuda" and amp and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=true needs bfloat16, which this CUDA device lacks")
    return torch.device(name)


def _write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _format(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _log_to_file(path: Path) -> None:
    """The package's INFO log also goes to the run folder (replacing a previous run's file when
    several runs share one process, e.g. an experiment script)."""
    package = logging.getLogger("deepemocluster")
    for old in [h for h in package.handlers if getattr(h, "run_log", False)]:
        package.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path)
    handler.run_log = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", default=None, help="YAML file (default: configs/default.yaml if present)"
    )
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    config_path = args.config or (
        "configs/default.yaml" if Path("configs/default.yaml").is_file() else None
    )
    name = Path(config_path).stem if config_path else "default"
    return exit_code(lambda: run(load_config(config_path, args.overrides), name))


def exit_code(work: Callable[[], object]) -> int:
    """An entry point's exit status: 0 on success, 128 + signal number when interrupted (the
    last finished epoch is checkpointed), 1 with one log line for any reported error."""
    try:
        work()
    except Interrupted as e:
        log.error("%s; the last finished epoch is checkpointed", e)
        return 128 + e.signum
    except DeepEmoClusterError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
