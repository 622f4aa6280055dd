"""The schema: every option and its default, as dataclasses (``config.load_config`` loads it).

Every default lives here and nowhere else; docs/user_guide.md explains the options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

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


@dataclass
class ChunkConfig:
    n_chunks: int = 11
    frames: int = 62
    clip: float = 3.0  # z-normalised features are clipped to [-clip, clip]


@dataclass
class ModelConfig:
    # what turns a chunk's stored features into the chunk embedding the heads share (and so
    # which features the store computes): mel_cnn, the reference's CNN on mel features
    # (deepemocluster/model/mel_cnn.py; model.channels and model.strides are its layers)
    frontend: str = "mel_cnn"
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
    # the regressor also sees per-chunk spectral statistics (per-bin mean, std, delta std)
    # beside the CNN embedding; deepemocluster/model/statistics.py
    statistics: bool = False
    # a ridge on the labelled utterances' chunk statistics (alpha per attribute on Development),
    # fit before training, and a residual regressor that learns what it misses; each attribute
    # predicts the plain output, the readout's or their average, as Development chooses;
    # deepemocluster/statistics_ridge/readout.py
    ridge_readout: bool = False


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
    # machine): AVX512-BF16/AMX CPU fp32 101/121/86, bf16 335/242/190; AVX2-only fp32 104/89/53.
    # Within a phase the Trainer keeps freed heap memory for reuse (heap.keep_freed_heap): then
    # AVX2-only fp32 ran 64-chunk batches at 131-135 chunks/s against 85-94. One value serves
    # both precisions (docs/decisions.md, "Speed on AVX2-only CPUs")
    eval_batch_chunks: int = 128
    # at most this many chunks through the network at once in a training step (0: the whole
    # batch): exact whole-batch losses, BatchNorm per micro-batch; training/microbatch.py.
    # One step of 32/64 chunks, chunks/s (same benchmark): AVX512-BF16/AMX CPU fp32 25/17, bf16
    # 21/23; AVX2-only fp32 26/17 (bf16 emulated there: 2.4/2.0, hence train.amp=auto). With
    # freed heap memory kept (as the Trainer does), AVX2-only fp32 at 32/64/128 chunks: 59/61/56
    # (1 thread), and a 704-chunk step in micro-batches of 32: 17-25 chunks/s against 12-13
    micro_batch_chunks: int = 0
    # stop each training pass after this many optimiser steps (0: the whole pass): smoke runs,
    # and benchmarks that time a few steps of a large epoch
    max_steps_per_pass: int = 0
    ce_weight: float = 1.0
    ccc_weight: float = 1.0
    # weight of (1 − CCC) between the unlabelled chunks' predictions and the pseudo-ratings of a
    # ridge on the chunk statistics (deepemocluster/statistics_ridge/; model.aux_head=cluster only,
    # whose batches hold unlabelled chunks); 0 = no teacher. For the smallest label budgets: on the
    # demo corpora +0.05 mean CCC at 5 % labels, +0.03 at 10 %, nothing at 25 %, −0.04 at full
    # labels, where the model outgrows its teacher (docs/results.md)
    teacher_weight: float = 0.0
    patience: int = 0  # epochs without dev improvement before stopping; 0 = never stop early
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda (under torchrun: cuda:<LOCAL_RANK>)
    # bfloat16 autocast for training steps and the embedding pass (weights, losses and evaluation
    # stay float32): true | false | auto. auto = bfloat16 where it is fast (CUDA with bf16; a CPU
    # with AVX512-BF16 or AMX: 1.5x faster epochs), float32 elsewhere, where bf16 is emulated
    # (deepemocluster/runtime/hardware.py, docs/performance.md). Any, not bool: OmegaConf has no bool|str.
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
    # a clustering run ends with the cluster-emotion report (docs/analysis.md); false: none, e.g.
    # for many study trials (python -m deepemocluster.analyze RUN_ID makes it later)
    report: bool = True


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
