"""The one schema of every option, loaded strictly with OmegaConf.

A YAML file is merged over the dataclass defaults, then ``key.sub=value`` overrides from the command
line. Unknown keys, wrong types and missing mandatory values (``???``) fail before any work starts,
naming the key. Every default lives here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepemocluster.errors import ConfigError

ATTRIBUTES = ("arousal", "valence", "dominance")


@dataclass
class DemoConfig:
    """Size and seed of the built-in synthetic corpus (see docs/demo_corpus.md)."""

    seed: int = 0
    n_train: int = 400
    n_dev: int = 120
    n_test: int = 160
    n_unlabelled: int = 400
    n_speakers: int = 40
    min_seconds: float = 1.5
    max_seconds: float = 4.5
    # long unlabelled "episodes" of several speakers' turns (Unlabelled/episodes/), each
    # episode_seconds × U(2/3, 4/3) long; 0 = none
    n_episodes: int = 0
    episode_seconds: float = 270.0


@dataclass
class SplitNames:
    train: str = "Train"
    dev: str = "Development"
    test: str = "Test1"


@dataclass
class DataConfig:
    # msp_podcast: ROOT/Audios + ROOT/Labels/labels_consensus.csv; csv: a generic manifest file;
    # demo: the built-in corpus, generated at `root` on first use (MSP-Podcast layout).
    format: str = "demo"
    root: str = MISSING  # mandatory: the corpus folder (demo: where to generate it)
    manifest: str | None = None
    unlabelled: list[str] = field(default_factory=list)
    splits: SplitNames = field(default_factory=SplitNames)
    # Keep this fraction of Train utterances labelled (per seed); the rest become unlabelled.
    label_fraction: float = 1.0
    allow_absolute_paths: bool = False
    # A run fails when more than this share of its audio files cannot be used.
    max_skip_ratio: float = 0.1
    # cut unlabelled recordings into speaking turns (the `segment` group): auto = those longer
    # than segment.max_s; always; never
    segment: str = "auto"
    demo: DemoConfig = field(default_factory=DemoConfig)


@dataclass
class FeatureConfig:
    kind: str = "log_mel"  # log_mel | mel (power, as the reference)
    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 512
    hop_length: int = 256
    fmin: float = 0.0
    fmax: float | None = None
    log_offset: float = 1e-6
    store: str = "runs/features"
    workers: int = 2


# --- segmentation of long recordings (deepemocluster/data/segments.py) ---------------------------


@dataclass
class SegmentConfig:
    """Speech detection (silero-vad) and cutting into MSP-Podcast-sized turns; docs/user_guide.md."""

    threshold: float = 0.5  # speech probability that starts a turn (ends below threshold - 0.15)
    pause_s: float = 0.5  # a quieter stretch shorter than this does not end a turn
    pad_s: float = 0.1  # kept before and after detected speech
    min_s: float = 2.75  # shorter pieces are dropped
    max_s: float = 11.0  # longer turns are split at their quietest point
    backend: str = "auto"  # auto (onnx when onnxruntime is importable, else jit) | jit | onnx


_SEGMENT_CHOICES = {
    "data.segment": ("auto", "always", "never"),
    "transfer.source.segment": ("auto", "always", "never"),
    "segment.backend": ("auto", "jit", "onnx"),
}


def _validate_segment(cfg: DictConfig) -> None:
    for key, allowed in _SEGMENT_CHOICES.items():
        if OmegaConf.select(cfg, key) not in allowed:
            value = OmegaConf.select(cfg, key)
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(allowed)}")
    seg = cfg.segment
    if not 0.0 < seg.threshold < 1.0:
        raise ConfigError(f"config key 'segment.threshold': must be in (0, 1), got {seg.threshold}")
    for key in ("pause_s", "pad_s", "min_s"):
        if seg[key] < 0 or (key == "min_s" and seg[key] == 0):
            raise ConfigError(
                f"config key 'segment.{key}': must be >= 0 (min_s > 0), got {seg[key]}"
            )
    if seg.max_s < 2 * seg.min_s + 0.1:
        raise ConfigError(
            f"config key 'segment.max_s': need >= 2 × segment.min_s + 0.1 (a split turn must leave "
            f"two pieces of min_s), got {seg.max_s}"
        )


# ------------------------------------------------------------------------------------------------


@dataclass
class ChunkConfig:
    n_chunks: int = 11
    frames: int = 62
    clip: float = 3.0  # z-normalised features are clipped to [-clip, clip]


@dataclass
class ModelConfig:
    channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64, 128, 128, 128])
    strides: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 2, 2, 2])
    embed_dim: int = 256
    head_dim: int = 256
    dropout: float = 0.5
    attributes: list[str] = field(default_factory=lambda: list(ATTRIBUTES))
    # the head trained beside the regressor: cluster (K-means pseudo-labels), siamese (pair
    # loss) or none (the regressor alone: the supervised baseline)
    aux_head: str = "cluster"
    # chunks → utterance: mean (of chunk predictions, the reference) | attention (learned weights
    # over chunk embeddings, then the regressor); deepemocluster/model/pooling.py
    pooling: str = "mean"


@dataclass
class ClusterConfig:
    mode: str = "joint"  # joint | two_stage (the reference)
    k: int = 30
    iterations: int = 20
    pca_dim: int = 0  # 0 = no PCA-whitening (the reference); clamped to what the data allows
    l2_normalize: bool = True
    threads: int = 0  # faiss OpenMP threads for k-means; 0 = train.threads; docs/performance.md


@dataclass
class SiameseConfig:
    """The pairwise head (model.aux_head=siamese) and how its pairs are labelled; docs/siamese.md."""

    loss: str = (
        "relative"  # relative (relative-distance, our reading of Feng & Chaspari) | contrastive
    )
    distance: str = "euclidean"  # euclidean | cosine
    embed_dim: int = 64  # output of the projection MLP (its hidden width is model.head_dim)
    margin: float = 1.0  # contrastive loss only
    weight: float = 1.0  # of the pair loss beside train.ccc_weight × (1 − CCC)
    pairs_per_batch: int = 64  # half same, half different, drawn from the batch's labelled chunks
    # "same" pair = same categorical class (class), same bin of one attribute (bin), or class when
    # the corpus has classes, else bin (auto).
    pair_label: str = "auto"  # auto | class | bin
    bin_attribute: str = "arousal"
    bin_edges: list[float] = field(default_factory=lambda: [3.0, 5.0])  # low < 3 ≤ mid < 5 ≤ high


@dataclass
class TransferConfig:
    """``python -m deepemocluster.transfer``: pre-train on ``source``, fine-tune on ``data``."""

    source: DataConfig = field(default_factory=lambda: DataConfig(root=""))
    pretrained_run: str = ""  # "": pre-train now; a run id: reuse its checkpoint; none: random init
    freeze_blocks: int = 0  # first N encoder blocks frozen; -1 = all but the last, 0 = none
    shots: int = 5  # labelled target Train utterances per class (all of a smaller class)
    knn: int = 5  # neighbours in the k-NN vote
    finetune_epochs: int = 10
    finetune_lr: float = 5e-4


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | sgd | none
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass
class OptimConfig:
    main: OptimizerConfig = field(default_factory=OptimizerConfig)
    # The reference steps a second optimiser over the same parameters; none = off.
    second: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="none", lr=1e-3))
    top: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.05))


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_utterances: int = 64
    # inference batch of the embedding and evaluation passes; on CPU a batch whose largest
    # activation stays under glibc's 32 MiB mmap threshold runs fastest (docs/decisions.md).
    # Reference encoder, 2 threads, chunks/s at 32/64/128 (benchmarks/amp_cpu_kinds.py, loaded
    # machine): AVX512-BF16/AMX CPU fp32 101/121/86, bf16 335/242/190; AVX2-only fp32 104/89/53
    eval_batch_chunks: int = 128
    # at most this many chunks through the network at once in a training step (0: the whole
    # batch): exact whole-batch losses, BatchNorm per micro-batch; training/microbatch.py.
    # One step of 32/64 chunks, chunks/s (same benchmark): AVX512-BF16/AMX CPU fp32 25/17, bf16
    # 21/23; AVX2-only fp32 26/17 (bf16 emulated there: 2.4/2.0, hence train.amp=auto)
    micro_batch_chunks: int = 0
    # stop each training pass after this many optimiser steps (0: the whole pass): smoke runs,
    # and benchmarks that time a few steps of a large epoch
    max_steps_per_pass: int = 0
    ce_weight: float = 1.0
    ccc_weight: float = 1.0
    patience: int = 0  # epochs without dev improvement before stopping; 0 = never stop early
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda (under torchrun: cuda:<LOCAL_RANK>)
    # bfloat16 autocast for training steps and the embedding pass (weights, losses and evaluation
    # stay float32): true | false | auto. auto = bfloat16 where it is fast (CUDA with bf16; a CPU
    # with AVX512-BF16 or AMX: 1.5x faster epochs), float32 elsewhere, where bf16 is emulated
    # (deepemocluster/hardware.py, docs/performance.md). Any, not bool: OmegaConf has no bool|str.
    amp: Any = "auto"
    threads: int = 2  # torch intra-op threads (per process under torchrun)
    # torchrun: how long ranks wait for each other, e.g. while rank 0 extracts the features
    dist_timeout_min: float = 60.0
    loader_workers: int = 0
    channels_last: bool = True
    resume: bool = False


@dataclass
class TrackingConfig:
    uri: str = ""  # empty: MLFLOW_TRACKING_URI, else sqlite:///<runs>/mlflow.db
    experiment: str = "deepemocluster"
    run_name: str = ""  # empty: <config name>-<timestamp>; fixed names make resume scripts simple
    runs_dir: str = "runs"
    connect_timeout_s: float = 10.0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    chunking: ChunkConfig = field(default_factory=ChunkConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    siamese: SiameseConfig = field(default_factory=SiameseConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


_CHOICES = {
    "data.format": ("demo", "msp_podcast", "csv"),
    "features.kind": ("log_mel", "mel"),
    "model.aux_head": ("cluster", "siamese", "none"),
    "model.pooling": ("mean", "attention"),
    "siamese.loss": ("relative", "contrastive"),
    "siamese.distance": ("euclidean", "cosine"),
    "siamese.pair_label": ("auto", "class", "bin"),
    "siamese.bin_attribute": ATTRIBUTES,
    "transfer.source.format": ("demo", "msp_podcast", "csv"),
    "cluster.mode": ("joint", "two_stage"),
    "optim.main.name": ("adam", "sgd"),
    "optim.second.name": ("adam", "sgd", "none"),
    "optim.top.name": ("adam", "sgd"),
    "train.device": ("auto", "cpu", "cuda"),
}

_POSITIVE = (
    "features.sample_rate",
    "features.n_mels",
    "features.n_fft",
    "features.hop_length",
    "features.workers",
    "chunking.n_chunks",
    "chunking.frames",
    "model.embed_dim",
    "model.head_dim",
    "cluster.k",
    "cluster.iterations",
    "siamese.embed_dim",
    "siamese.margin",
    "transfer.shots",
    "transfer.knn",
    "train.epochs",
    "train.batch_utterances",
    "train.eval_batch_chunks",
    "train.threads",
)
_NON_NEGATIVE = ("transfer.finetune_epochs", "train.micro_batch_chunks", "train.max_steps_per_pass")


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, text: str | None = None
) -> DictConfig:
    """Schema ← YAML file (or YAML ``text``, e.g. from a checkpoint) ← ``key=value`` overrides,
    validated; raises ConfigError naming the key."""
    try:
        cfg = OmegaConf.structured(Config)
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            file_cfg = OmegaConf.load(path)
            _refuse_replaced_keys(file_cfg, f" (in {path})")
            mandatory = [k for k in OmegaConf.missing_keys(file_cfg) if "[" not in k]
            cfg = OmegaConf.merge(cfg, _anchor_paths(file_cfg, path.parent))
            for key in mandatory:  # merge keeps the schema default under a "???": undo that
                OmegaConf.update(cfg, key, MISSING)
        if text is not None:
            cfg = OmegaConf.merge(cfg, _upgrade_saved(OmegaConf.create(text)))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
            dotlist = OmegaConf.from_dotlist(overrides)
            _refuse_replaced_keys(dotlist, "")
            cfg = OmegaConf.merge(cfg, dotlist)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"mandatory value not set: {missing[0]} (pass {missing[0]}=...)")
        OmegaConf.resolve(cfg)
        # Defaults and overrides are relative to the cwd: make them absolute so that the saved
        # YAML means the same data wherever it is loaded from.
        _anchor_paths(cfg, Path.cwd())
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        where = f" (in {path})" if path else ""
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"config key {key!r}: {first_line}{where}") from e
    OmegaConf.set_readonly(cfg, True)
    _validate(cfg)
    return cfg


# Keys that were removed because another key says the same: a user who writes one is told
# which key replaced it; a config saved with one (an older checkpoint) is upgraded.
_REPLACED = {
    "cluster.enabled": "model.aux_head (cluster.enabled=false is model.aux_head=none)",
}


def _refuse_replaced_keys(node: DictConfig, where: str) -> None:
    for key, replacement in _REPLACED.items():
        if OmegaConf.select(node, key, default=None) is not None:
            raise ConfigError(f"config key {key!r} was replaced by {replacement}{where}")


def _upgrade_saved(node: DictConfig) -> DictConfig:
    """A config saved by an older version, read back from a checkpoint: ``cluster.enabled``
    becomes ``model.aux_head``."""
    enabled = OmegaConf.select(node, "cluster.enabled", default=None)
    if enabled is not None:
        node.cluster.pop("enabled")
        if not enabled and OmegaConf.select(node, "model.aux_head", default="cluster") == "cluster":
            OmegaConf.update(node, "model.aux_head", "none")
    return node


_DATA_NODES = ("data", "transfer.source")  # corpus descriptions (DataConfig)
_PATH_KEYS = (
    *(f"{node}.{key}" for node in _DATA_NODES for key in ("root", "manifest")),
    "features.store",
    "tracking.runs_dir",
)


def _anchor_paths(file_cfg: DictConfig, base: Path) -> DictConfig:
    """Relative paths written in a YAML file are relative to that file, not to the cwd."""
    for key in _PATH_KEYS:
        value = OmegaConf.select(file_cfg, key)
        if isinstance(value, str) and value and value != MISSING:
            OmegaConf.update(file_cfg, key, str(resolve_path(value, base)))
    for node in _DATA_NODES:
        unlabelled = OmegaConf.select(file_cfg, f"{node}.unlabelled")
        if unlabelled:
            anchored = [str(resolve_path(v, base)) for v in unlabelled]
            OmegaConf.update(file_cfg, f"{node}.unlabelled", anchored, merge=False)
    return file_cfg


def _validate(cfg: DictConfig) -> None:
    _validate_segment(cfg)
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(allowed)}")
    for key in _POSITIVE:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"config key {key!r}: must be > 0, got {OmegaConf.select(cfg, key)}")
    for key in _NON_NEGATIVE:
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"config key {key!r}: must be >= 0, got {OmegaConf.select(cfg, key)}")
    if len(cfg.model.channels) != len(cfg.model.strides) or not cfg.model.channels:
        raise ConfigError(
            "config keys 'model.channels' and 'model.strides' must be non-empty lists of one length"
        )
    unknown = [a for a in cfg.model.attributes if a not in ATTRIBUTES]
    if unknown or not cfg.model.attributes:
        raise ConfigError(
            f"config key 'model.attributes': use a subset of {ATTRIBUTES}, got {list(cfg.model.attributes)}"
        )
    if not (isinstance(cfg.train.amp, bool) or cfg.train.amp == "auto"):
        raise ConfigError(
            f"config key 'train.amp': {cfg.train.amp!r} is not one of true, false, auto"
        )
    if not 0.0 < cfg.data.label_fraction <= 1.0:
        raise ConfigError("config key 'data.label_fraction': must be in (0, 1]")
    if not 0.0 <= cfg.data.max_skip_ratio <= 1.0:
        raise ConfigError("config key 'data.max_skip_ratio': must be in [0, 1]")
    if cfg.cluster.k < 2:
        raise ConfigError(f"config key 'cluster.k': need at least 2 clusters, got {cfg.cluster.k}")
    if cfg.data.format == "csv" and not cfg.data.manifest:
        raise ConfigError("config key 'data.manifest': required when data.format=csv")
    if cfg.data.demo.episode_seconds <= 0:
        raise ConfigError("config key 'data.demo.episode_seconds': must be > 0")
    if cfg.data.demo.min_seconds <= 0 or cfg.data.demo.max_seconds < cfg.data.demo.min_seconds:
        raise ConfigError("config keys 'data.demo.min_seconds'/'max_seconds': need 0 < min <= max")
    edges = list(cfg.siamese.bin_edges)
    if not edges or sorted(set(edges)) != edges:
        raise ConfigError(f"config key 'siamese.bin_edges': need increasing bin edges, got {edges}")
    if cfg.siamese.pairs_per_batch < 2:
        raise ConfigError(
            "config key 'siamese.pairs_per_batch': need ≥ 2 (one same, one different)"
        )


def to_yaml(cfg: DictConfig) -> str:
    """The fully resolved config as YAML (saved with every run)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"train.epochs": 50, ...}`` for MLflow params."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def resolve_path(value: str, base: Path | None = None) -> Path:
    """Absolute path for a config value: relative paths are taken from ``base`` (default: cwd)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else ((base or Path.cwd()) / p).resolve()
