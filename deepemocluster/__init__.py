"""DeepEmoCluster: semi-supervised speech emotion recognition with per-epoch deep clustering."""

__version__ = "0.1.0"
