"""Loading the options strictly with OmegaConf: the schema (``schema.py``) ← a YAML file ←
``key.sub=value`` overrides from the command line. Unknown keys, wrong types, missing mandatory
values (``???``) and values out of range fail before any work starts, naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepemocluster.config.schema import ATTRIBUTES, Config
from deepemocluster.errors import ConfigError

_CHOICES = {
    "data.segment": ("auto", "always", "never"),
    "transfer.source.segment": ("auto", "always", "never"),
    "segment.backend": ("auto", "jit", "onnx"),
    "data.format": ("demo", "msp_podcast", "csv"),
    "features.kind": ("log_mel", "mel"),
    "model.frontend": ("mel_cnn",),  # the keys of model.build.FRONTENDS
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
