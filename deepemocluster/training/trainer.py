"""The DeepEmoCluster algorithm over one ``TrainingData``: epochs of embed → cluster → train →
evaluate, model selection on Development, and the state a resumed run continues from.

Files, tracking and signals are the run's business (``training.run``); the trainer reports what
happens through ``Hooks``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from deepemocluster import clustering
from deepemocluster.checkpoint import Checkpoint, ClusterSpace
from deepemocluster.config import to_yaml
from deepemocluster.data.datasets import ChunkBatches, ChunkDataset
from deepemocluster.data.samplers import (
    ShardedBatches,
    ShuffledBatchSampler,
    UniformClusterSampler,
    UtteranceBatch,
    UtteranceBatches,
)
from deepemocluster.errors import Interrupted
from deepemocluster.metrics import ccc_report, nmi
from deepemocluster.model import DeepEmoCluster
from deepemocluster.model.build import build_model
from deepemocluster.runtime import distributed
from deepemocluster.runtime.hardware import resolve_amp
from deepemocluster.runtime.heap import keep_freed_heap, releases_free_heap
from deepemocluster.serving.inference import embed_chunks, predict_utterances, utterance_outputs
from deepemocluster.training.data import TrainingData
from deepemocluster.training.extensions import build_extensions
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.objective import build_terms
from deepemocluster.training.step import TrainingStep

log = logging.getLogger("deepemocluster")
# Each random draw of an epoch has its own seed: stage → offset (see Trainer._seed).
_SEED_OFFSETS = {"": 0, "joint": 1, "unlabelled": 2, "labelled": 3, "final": 4, "pairs": 5}


def make_optimizer(spec: DictConfig, params) -> torch.optim.Optimizer | None:
    """The optimiser an ``optim.*`` config group describes, or None (``name: none``)."""
    params = list(params)
    if spec.name == "none" or not params:
        return None
    if spec.name == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


class Trainer:
    """Trains ``build_model(cfg)`` on ``data``. Under torchrun every rank runs the same trainer:
    each embeds and trains on its shard, rank 0 clusters and evaluates, decisions are shared."""

    def __init__(
        self,
        cfg: DictConfig,
        data: TrainingData,
        device: torch.device,
        world: distributed.World | None = None,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.world = world or distributed.World()
        self.hooks = list(hooks)
        # train.amp (true | false | auto) for this device: bfloat16 only where it is fast
        self.amp, self.amp_reason = resolve_amp(cfg.train.amp, device)
        keep_freed_heap()  # reuse freed memory within a phase; each phase ends with a trim
        # what the model variant adds: a fit before training, loss terms, evaluation decisions
        self.extensions = build_extensions(cfg, data)
        torch.manual_seed(cfg.train.seed)
        self.model: DeepEmoCluster = build_model(cfg, data.corpus.packed.frames.shape[1]).to(device)
        for extension in self.extensions:
            extension.on_model(self.model)
        self.terms = build_terms(cfg, data, [t for e in self.extensions for t in e.loss_terms()])
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        body = [p for n, p in self.model.named_parameters() if not n.startswith("cluster.top.")]
        self.optimizers = {
            name: opt
            for name in ("main", "second")
            if (opt := make_optimizer(cfg.optim[name], body)) is not None
        }
        self.top_optimizer: torch.optim.Optimizer | None = None
        self.epoch, self.best_score, self.best_epoch, self.bad_epochs = 0, -np.inf, 0, 0
        self.prev_assignments: np.ndarray | None = None
        self.interrupt: int | None = None  # a signal to stop for at the next step (signals.py)

    @property
    def clusters(self) -> bool:
        return self.model.cluster is not None

    # --- the algorithm -----------------------------------------------------------------------
    def fit(self, epochs: int | None = None) -> None:
        """Epochs until ``epochs`` (default ``train.epochs``) or until ``train.patience`` epochs
        pass without a better Development CCC."""
        epochs = self.cfg.train.epochs if epochs is None else epochs
        patience = self.cfg.train.patience
        while self.epoch < epochs and not (patience > 0 and self.bad_epochs >= patience):
            self._check_interrupt()
            metrics = self.run_epoch()
            self.epoch += 1
            if metrics["dev/ccc_mean"] > self.best_score:
                self.best_score, self.best_epoch, self.bad_epochs = (
                    metrics["dev/ccc_mean"],
                    self.epoch,
                    0,
                )
            else:
                self.bad_epochs += 1
            self._emit("on_epoch_end", self.epoch, metrics)
        self._check_interrupt()

    def run_epoch(self) -> dict[str, float]:
        """One epoch; returns its metrics (losses, clustering statistics, Development CCC)."""
        began = time.perf_counter()
        metrics: dict[str, float] = {}
        if not self.clusters:
            # no pseudo-labels: the regressor (and the Siamese pairs) on shuffled labelled chunks
            batches = ShuffledBatchSampler(
                self.data.labelled_chunks,
                self.batch_chunks,
                self._seed(),
                self.data.train.n_total_chunks,
            )
            metrics |= self.train_pass(batches, cluster_labels=None)
        for stage, ids in self.cluster_stages():
            # 1-2. embed the stage's chunks with the current encoder; k-means → pseudo-labels
            labels, stage_metrics = self.recluster(ids, stage)
            # 3. a fresh top layer: cluster ids are permuted from one clustering to the next
            self.model.cluster.reset_top(self.cfg.cluster.k)
            self.top_optimizer = make_optimizer(
                self.cfg.optim.top, self.model.cluster.top.parameters()
            )
            # 4. batches that serve every cluster equally often (joint keeps the plain seed)
            sampler_seed = self._seed("" if stage == "joint" else stage)
            batches = UniformClusterSampler(ids, labels[ids], self.batch_chunks, sampler_seed)
            # 5. cross-entropy on the pseudo-labels + (1 − CCC) on the labelled chunks
            stage_metrics |= self.train_pass(batches, cluster_labels=labels)
            metrics |= {
                f"{k}_{stage}" if stage == "unlabelled" else k: v for k, v in stage_metrics.items()
            }
        # 6. Development CCC: model selection and early stopping
        metrics |= {f"dev/{k}": v for k, v in self.evaluate_dev().items()}
        metrics["time/epoch_s"] = time.perf_counter() - began
        return metrics

    def cluster_stages(self) -> list[tuple[str, np.ndarray]]:
        """What each clustering of the epoch covers: every training chunk at once (joint), or
        the reference's unlabelled stage, then its labelled stage (two_stage; a stage with
        fewer chunks than clusters is left out)."""
        if not self.clusters:
            return []
        if self.cfg.cluster.mode == "joint":
            return [("joint", np.arange(self.data.train.n_total_chunks))]
        stages = [
            ("unlabelled", self.data.unlabelled_chunks),
            ("labelled", self.data.labelled_chunks),
        ]
        return [(stage, ids) for stage, ids in stages if len(ids) >= self.cfg.cluster.k]

    # --- the phases --------------------------------------------------------------------------
    @releases_free_heap
    def recluster(self, ids: np.ndarray, stage: str) -> tuple[np.ndarray, dict[str, float]]:
        """Cluster the embeddings of chunks ``ids``; returns labels indexed by global chunk id.
        Under torchrun each rank embeds its shard and rank 0 clusters them all."""
        began = time.perf_counter()
        c, world = self.cfg.cluster, self.world
        with self._phase("embed"):
            emb = embed_chunks(
                self.model,
                self.data.train,
                self.eval_chunks,
                self.device,
                distributed.shard(ids, world),
                self.amp,
            )
            emb = distributed.gather_rows(emb, world)
        metrics: dict[str, float] = {}
        result = None
        if world.is_main:
            with self._phase("kmeans"):
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
        labels = np.full(self.data.train.n_total_chunks, -1, dtype=np.int64)
        labels[ids] = assignments
        metrics["time/cluster_s"] = time.perf_counter() - began
        if stage != "unlabelled":
            if self.prev_assignments is not None and len(self.prev_assignments) == len(ids):
                metrics["cluster/nmi"] = nmi(self.prev_assignments, assignments)
            self.prev_assignments = assignments
            if world.is_main:
                self._emit("on_clustering", self.epoch + 1, stage, assignments)
        return labels, metrics

    @releases_free_heap
    def train_pass(self, batches: Sampler, cluster_labels: np.ndarray | None) -> dict[str, float]:
        """One pass over ``batches`` of chunk ids, one optimiser step per batch; returns the mean
        of each loss term over the pass."""
        with self._phase("train"):
            self.model.train()
            net = distributed.wrap(self.model, self.world)  # the model itself outside torchrun
            if self.world.enabled:
                batches = ShardedBatches(batches, self.world.rank, self.world.size)
            # under attention pooling a drawn labelled chunk brings its whole utterance
            whole_below = 0 if self.model.pooling is None else len(self.data.labelled_chunks)
            batches = UtteranceBatches(batches, self.data.train.n_chunks, whole_below)
            optimizers = list(self.optimizers.values())
            if cluster_labels is not None:
                optimizers.append(self.top_optimizer)
            step = TrainingStep(
                self.model,
                net,
                self.data,
                self.device,
                np.random.default_rng(self._seed("pairs")),
                self.world.enabled,
                self.terms,
                self.cfg.train.micro_batch_chunks,
                self.amp,
            )
            terms: dict[str, list[float]] = {}
            for i, (x, batch) in enumerate(self._loader(batches)):
                self._check_interrupt()
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                losses = step(x, batch, cluster_labels)
                if losses is None:  # nothing to learn from this batch
                    continue
                losses.check_finite(f"epoch {self.epoch + 1}, step {i + 1}")
                for name, value in losses.terms.items():
                    terms.setdefault(name, []).append(value)
                for opt in optimizers:
                    opt.step()
                self._emit("on_step", i + 1, losses.terms)
            distributed.sync_buffers(self.model, self.world)
        order = [f"train/loss_{t.name}" for t in self.terms]
        return {k: float(np.mean(terms[k])) for k in order if k in terms}

    @releases_free_heap
    def evaluate_dev(self) -> dict[str, float]:
        """Development CCC, computed on rank 0 and shared, so every rank takes the same
        best-epoch and patience decisions (and those of the extensions)."""
        report = None
        if self.world.is_main:
            with self._phase("evaluate"):
                dev, attributes = self.data.dev, list(self.cfg.model.attributes)
                outputs = utterance_outputs(self.model, dev, self.eval_chunks, self.device)
                ratings, restore = self.data.ratings(dev, attributes), self.data.scaler.restore
                report = ccc_report(ratings, restore(outputs["prediction"]), attributes)
                for extension in self.extensions:
                    report |= extension.on_evaluate(outputs, ratings, restore)
        report = distributed.broadcast_object(report, self.world)
        for extension in self.extensions:
            extension.on_report(self.model, report)
        return report

    def start_metrics(self) -> dict[str, float]:
        """What the extensions report before the first epoch (logged once by the run)."""
        return {k: v for e in self.extensions for k, v in e.start_metrics().items()}

    def evaluate(self, ds: ChunkDataset, predicted: np.ndarray | None = None) -> dict[str, float]:
        """CCC per attribute (and their mean) of the current model on ``ds``, on the 1–7 scale;
        ``predicted``: ``predict(ds)`` where the caller needs the predictions too (one pass)."""
        attributes = list(self.cfg.model.attributes)
        if predicted is None:
            predicted = self.predict(ds)
        return ccc_report(
            self.data.ratings(ds, attributes), self.data.scaler.restore(predicted), attributes
        )

    def predict(self, ds: ChunkDataset) -> np.ndarray:
        """The current model's z-scale predictions for the utterances of ``ds``."""
        return predict_utterances(self.model, ds, self.eval_chunks, self.device)

    @releases_free_heap
    def final_clustering(self) -> tuple[np.ndarray, ClusterSpace]:
        """Cluster the training chunks once more with the current (best) weights: the clusters
        that prediction and analysis refer to. Returns each chunk's cluster and the space; the
        heap its embedding batches leave is handed back (the final stage's peak)."""
        c = self.cfg.cluster
        emb = embed_chunks(self.model, self.data.train, self.eval_chunks, self.device)
        result = clustering.cluster(
            emb, c.k, c.iterations, self._seed("final"), c.pca_dim, c.l2_normalize
        )
        return result.assignments, ClusterSpace(result.projection, result.centroids)

    # --- state -------------------------------------------------------------------------------
    def start_from(self, model_state: dict) -> None:
        """Start from another run's weights (transfer); the extensions then put back what is
        this run's own (the statistics ridge is fit on this run's labelled utterances)."""
        self.model.load_state_dict(model_state)
        for extension in self.extensions:
            extension.on_model(self.model)

    def checkpoint(self, run_id: str = "") -> Checkpoint:
        """The model as it is now, with what it needs to be used or trained on."""
        return Checkpoint(
            config_yaml=to_yaml(self.cfg),
            model=self.model.state_dict(),
            scaler=self.data.scaler,
            feature_mean=self.data.corpus.mean,
            feature_std=self.data.corpus.std,
            run_id=run_id,
            trainer=self.state_dict(),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the model's weights (``model.state_dict()``)."""
        return {
            "epoch": self.epoch,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "torch_rng": torch.get_rng_state(),
            "best_score": float(self.best_score),
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "prev_assignments": None
            if self.prev_assignments is None
            else torch.from_numpy(self.prev_assignments),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.best_epoch = state["epoch"], state["best_epoch"]
        self.bad_epochs, self.best_score = state["bad_epochs"], state["best_score"]
        prev = state["prev_assignments"]
        self.prev_assignments = None if prev is None else prev.numpy()

    # --- helpers -----------------------------------------------------------------------------
    @property
    def batch_chunks(self) -> int:
        return self.cfg.train.batch_utterances * self.cfg.chunking.n_chunks

    @property
    def eval_chunks(self) -> int:
        return self.cfg.train.eval_batch_chunks

    def _seed(self, stage: str = "") -> int:
        return self.cfg.train.seed * 100_003 + (self.epoch + 1) * 17 + _SEED_OFFSETS[stage]

    def _loader(self, batches: Sampler) -> Iterator[tuple[torch.Tensor, UtteranceBatch]]:
        loader = DataLoader(
            ChunkBatches(self.data.train),
            sampler=batches,
            batch_size=None,
            num_workers=self.cfg.train.loader_workers,
        )
        interactive = sys.stderr.isatty()
        steps = islice(loader, self.cfg.train.max_steps_per_pass or None)
        return tqdm(steps, desc=f"epoch {self.epoch + 1}", leave=False, disable=not interactive)

    def _check_interrupt(self) -> None:
        if self.interrupt is not None:
            raise Interrupted(self.interrupt)

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        yield
        self._emit("on_phase", name, time.perf_counter() - began)

    def _emit(self, event: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, event)(*args)
