"""The tiny training configuration the end-to-end tests share: a small demo corpus, 32 mels and a
4-block narrow encoder, so a 2-epoch run takes seconds. Fixtures add their own paths and extras."""

TINY_DEMO = [
    "data.format=demo",
    "data.demo.n_train=48",
    "data.demo.n_dev=16",
    "data.demo.n_test=16",
    "data.demo.n_unlabelled=24",
    "data.demo.n_speakers=12",
    # none of configs/default.yaml's long episodes, which a command run from the repository
    # root (torchrun, a study) would otherwise read: one corpus for in-process and CLI runs
    "data.demo.n_episodes=0",
]

TINY_MODEL = [
    "features.n_mels=32",
    "features.workers=1",
    "chunking.n_chunks=3",
    "model.channels=[4,8,8,16]",
    "model.strides=[1,2,2,2]",
    "model.embed_dim=32",
    "model.head_dim=32",
    "model.dropout=0.1",
    "optim.main.lr=0.003",
    "train.epochs=2",
    "train.batch_utterances=8",
    # float32 whatever the CPU: the tests behave the same on machines with and without bf16
    "train.amp=false",
    # no cluster-emotion report at the end of a run (about 5 s): the shared trained_run has one
    "tracking.report=false",
]

TINY = [*TINY_DEMO, *TINY_MODEL, "cluster.k=4"]
