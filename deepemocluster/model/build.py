"""The model a config describes: its front-end, its heads and its variant.

The one place that knows every front-end and model variant: the trainer, checkpoints and the
exports build through it, and each variant lives in a module of its own.
"""

from __future__ import annotations

from omegaconf import DictConfig

from deepemocluster.model.frontend import FrontEnd
from deepemocluster.model.heads import ClusterHead, Regressor
from deepemocluster.model.mel_cnn import MelCNN
from deepemocluster.model.network import DeepEmoCluster
from deepemocluster.model.pooling import AttentionPooling
from deepemocluster.model.siamese import SiameseHead
from deepemocluster.model.statistics import ChunkStatistics
from deepemocluster.statistics_ridge.readout import ReadoutModel, RidgeReadout

FRONTENDS: dict[str, type[FrontEnd]] = {"mel_cnn": MelCNN}


def build_frontend(cfg: DictConfig, feature_dim: int) -> FrontEnd:
    """The front-end ``model.frontend`` names (a choice the config has checked), for stored
    features ``feature_dim`` wide."""
    return FRONTENDS[cfg.model.frontend].from_config(cfg, feature_dim)


def build_model(cfg: DictConfig, feature_dim: int) -> DeepEmoCluster:
    """The network for stored features ``feature_dim`` wide (mel bins for the mel CNN)."""
    m = cfg.model
    frontend = build_frontend(cfg, feature_dim)
    cluster = (
        ClusterHead(m.embed_dim, m.head_dim, cfg.cluster.k) if m.aux_head == "cluster" else None
    )
    siamese = (
        SiameseHead(m.embed_dim, m.head_dim, cfg.siamese.embed_dim)
        if m.aux_head == "siamese"
        else None
    )
    statistics = ChunkStatistics(feature_dim) if m.statistics else None
    regressor_in = m.embed_dim + (statistics.dim if statistics is not None else 0)
    regressor = Regressor(regressor_in, m.head_dim, len(m.attributes))
    pooling = AttentionPooling(regressor_in, m.head_dim) if m.pooling == "attention" else None
    parts = (frontend, cluster, regressor, siamese, pooling, statistics)
    if m.ridge_readout:
        readout = RidgeReadout(feature_dim, len(m.attributes), regressor_in, m.head_dim)
        return ReadoutModel(*parts, readout=readout)
    return DeepEmoCluster(*parts)
