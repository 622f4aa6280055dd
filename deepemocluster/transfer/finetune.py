"""``python -m deepemocluster.transfer [--config FILE] [key=value ...]``: source → target transfer.

Pre-train the network with the Siamese head on a source corpus (``transfer.source``; a complete
``deepemocluster.train`` run), then fine-tune it on ``transfer.shots`` labelled Train utterances
per class of the target corpus (``data``) with the first ``transfer.freeze_blocks`` encoder blocks
frozen, and score the target test split in embedding space (prototype and k-NN accuracy and
macro-F1) and, when the regressor is trained, by A/V/D CCC. MLflow: one parent run with nested
``<name>-pretrain`` and ``<name>-finetune`` runs; ``transfer.pretrained_run=<run id>`` reuses the
checkpoint of any earlier Siamese run instead of pre-training again.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from deepemocluster.checkpoint import Checkpoint
from deepemocluster.config import flatten, load_config, resolve_path, to_yaml
from deepemocluster.data.corpus import Corpus, hide_labels, load_corpus
from deepemocluster.data.datasets import ChunkDataset
from deepemocluster.errors import ConfigError, Interrupted
from deepemocluster.runtime import distributed
from deepemocluster.runtime.cli import exit_code, setup_logging
from deepemocluster.tracking import Tracker, download_checkpoint, resolve_uri
from deepemocluster.training.data import build_data, utterance_pair_labels
from deepemocluster.training.hooks import Hooks
from deepemocluster.training.run import run, select_device
from deepemocluster.training.run_folder import BEST
from deepemocluster.training.trainer import Trainer
from deepemocluster.transfer.fewshot import embed_utterances, score_embeddings

log = logging.getLogger("deepemocluster")
FINETUNED = "checkpoint_finetuned.pt"
# Settings a pre-trained checkpoint must share with the fine-tuning config to be loadable.
_ARCHITECTURE = ("model.", "chunking.", "siamese.embed_dim", "features.")
_NOT_ARCHITECTURE = ("features.store", "features.workers")


def run_transfer(cfg: DictConfig, config_name: str = "siamese_transfer") -> dict[str, float]:
    """Pre-train (or reuse), fine-tune and score; returns the target test metrics."""
    if cfg.model.aux_head != "siamese":
        raise ConfigError("transfer needs model.aux_head=siamese (it scores the Siamese embedding)")
    if distributed.launched_by_torchrun():
        raise ConfigError("transfer runs in one process: start it with python -m, not torchrun")
    torch.set_num_threads(cfg.train.threads)
    runs_dir = resolve_path(cfg.tracking.runs_dir)
    name = cfg.tracking.run_name or f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = runs_dir / name
    if run_dir.exists():
        raise ConfigError(f"run folder {run_dir} exists: choose another tracking.run_name")
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    tracker = Tracker.open(cfg.tracking)
    parent_id = tracker.start(name)
    tracker.log_params(flatten(cfg))
    tracker.log_artifact(run_dir / "config.yaml")
    try:
        init_state, source_run = _pretrained_state(cfg, name, parent_id)
        tracker.set_tags({"pretrained_run": source_run})
        metrics = _finetune(cfg, init_state, f"{name}-finetune", parent_id)
        tracker.log_metrics(metrics)
    except Interrupted:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    log.info("transfer %s done: %s", name, metrics)
    return metrics


def source_config(cfg: DictConfig, run_name: str) -> DictConfig:
    """The pre-training config: ``cfg`` with the source corpus as its ``data``."""
    if not cfg.transfer.source.root:
        raise ConfigError("transfer.source.root: the source corpus to pre-train on is not set")
    container = OmegaConf.to_container(cfg, resolve=True)
    container["data"] = container["transfer"]["source"]
    container["tracking"]["run_name"] = run_name
    return load_config(text=OmegaConf.to_yaml(container))


def few_shot(corpus: Corpus, cfg: DictConfig) -> Corpus:
    """Keep ``transfer.shots`` labelled Train utterances per class (all of a smaller class),
    drawn with ``train.seed``; the others join the Unlabelled split, so no label of theirs is
    read in training (their audio still counts in the feature statistics)."""
    train = corpus.rows(cfg.data.splits.train, labelled=True)
    labels = utterance_pair_labels(corpus, train, cfg)
    rng = np.random.default_rng(cfg.train.seed)
    keep = {
        int(row)
        for label in np.unique(labels[labels >= 0])
        for row in rng.permutation(train[labels == label])[: cfg.transfer.shots]
    }
    return replace(corpus, manifest=hide_labels(corpus.manifest, set(train.tolist()) - keep))


def frozen_block_count(freeze_blocks: int, n_blocks: int) -> int:
    """``transfer.freeze_blocks`` as a count: N ≥ 0 is N, −j is all but the last j blocks."""
    n = freeze_blocks if freeze_blocks >= 0 else n_blocks + freeze_blocks
    if not 0 <= n <= n_blocks:
        raise ConfigError(
            f"transfer.freeze_blocks={freeze_blocks}: the encoder has {n_blocks} blocks"
        )
    return n


def _pretrained_state(cfg: DictConfig, name: str, parent_id: str) -> tuple[Checkpoint | None, str]:
    """(checkpoint to start fine-tuning from, or None for a random start; its run id)."""
    ref = cfg.transfer.pretrained_run
    if ref == "none":
        return None, "none"
    if ref:
        uri = resolve_uri(cfg.tracking.uri, resolve_path(cfg.tracking.runs_dir))
        state = Checkpoint.load(download_checkpoint(uri, ref, cfg.tracking.connect_timeout_s))
        _check_architecture(cfg, state.config(), ref)
        return state, ref
    state = pretrain(cfg, f"{name}-pretrain", parent_id)
    return state, state.run_id


def pretrain(cfg: DictConfig, run_name: str, parent_run_id: str | None = None) -> Checkpoint:
    """Train on the source corpus (a complete training run, tracked under ``run_name``); returns
    its best checkpoint, whose ``run_id`` later transfers can pass as ``transfer.pretrained_run``."""
    source = source_config(cfg, run_name)
    run(source, "pretrain", parent_run_id=parent_run_id)
    return Checkpoint.load(resolve_path(source.tracking.runs_dir) / run_name / BEST)


def _check_architecture(cfg: DictConfig, pretrained: DictConfig, ref: str) -> None:
    ours, theirs = flatten(cfg), flatten(pretrained)
    differ = sorted(
        k
        for k in ours.keys() | theirs.keys()
        if k.startswith(_ARCHITECTURE)
        and k not in _NOT_ARCHITECTURE
        and ours.get(k) != theirs.get(k)
    )
    if differ or pretrained.model.aux_head != "siamese":
        raise ConfigError(
            f"transfer.pretrained_run={ref}: not a Siamese model of this shape "
            f"(differs in {', '.join(differ) or 'model.aux_head'})"
        )


class _LogEpochs(Hooks):
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics(metrics, step=epoch)


def _finetune(
    cfg: DictConfig, init_state: Checkpoint | None, name: str, parent_id: str
) -> dict[str, float]:
    """Fine-tune on the few-shot target Train set for ``transfer.finetune_epochs`` epochs (no
    model selection: a labelled development set larger than the training set would not be
    few-shot, so ``train.patience`` is off) and score the final weights on the target
    test split."""
    ft_cfg = load_config(
        text=to_yaml(cfg),
        overrides=[
            f"optim.main.lr={cfg.transfer.finetune_lr}",
            f"tracking.run_name={name}",
            "train.patience=0",
        ],
    )
    corpus = few_shot(load_corpus(ft_cfg), ft_cfg)
    data = build_data(corpus, ft_cfg)
    run_dir = resolve_path(cfg.tracking.runs_dir) / name
    run_dir.mkdir(parents=True)
    tracker = Tracker.open(cfg.tracking)
    run_id = tracker.start(name, parent_run_id=parent_id)
    try:
        tracker.log_params(flatten(ft_cfg))
        tracker.set_tags({"data_fingerprint": corpus.fingerprint, "run_dir": str(run_dir)})
        device = select_device(cfg.train.device)
        trainer = Trainer(ft_cfg, data, device, hooks=[_LogEpochs(tracker)])
        if init_state is not None:
            trainer.start_from(init_state.model)
        n_blocks = len(trainer.model.encoder.blocks)
        trainer.model.freeze_encoder_blocks(
            frozen_block_count(cfg.transfer.freeze_blocks, n_blocks)
        )
        trainer.fit(epochs=cfg.transfer.finetune_epochs)
        trainer.checkpoint(run_id).save(run_dir / FINETUNED)
        tracker.log_artifact(run_dir / FINETUNED, "checkpoints")
        test = {f"test/{k}": v for k, v in target_scores(trainer, ft_cfg).items()}
        test["support_utterances"] = float(data.n_labelled)
        tracker.log_metrics(test)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    return test


def target_scores(trainer: Trainer, cfg: DictConfig) -> dict[str, float]:
    """Prototype / k-NN accuracy and macro-F1 on the test split with the labelled Train
    utterances as support, plus A/V/D CCC when the regressor is trained (``train.ccc_weight``)."""
    data = trainer.data
    model, device, batch = trainer.model, trainer.device, cfg.train.eval_batch_chunks
    support = ChunkDataset.for_rows(
        data.corpus.packed,
        data.train.rows[: data.n_labelled],
        data.corpus.mean,
        data.corpus.std,
        cfg.chunking,
    )
    query_labels = utterance_pair_labels(data.corpus, data.test.rows, cfg)
    scored = np.flatnonzero(query_labels >= 0)
    query = embed_utterances(model, data.test, batch, device)[torch.from_numpy(scored)]
    report = score_embeddings(
        embed_utterances(model, support, batch, device),
        data.pair_labels[: data.n_labelled],
        query,
        query_labels[scored],
        cfg.siamese.distance,
        cfg.transfer.knn,
    )
    if cfg.train.ccc_weight > 0:
        report.update(trainer.evaluate(data.test))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepemocluster.transfer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", default="configs/siamese_transfer.yaml", help="YAML file")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    setup_logging()
    return exit_code(
        lambda: run_transfer(load_config(args.config, args.overrides), Path(args.config).stem)
    )
