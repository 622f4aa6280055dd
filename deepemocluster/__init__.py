"""DeepEmoCluster: semi-supervised speech emotion recognition with per-epoch deep clustering."""

import os

# Idle OpenMP threads sleep instead of spinning. Both runtimes (torch's libgomp and the one the
# faiss-cpu wheel brings) read this once, when they load, so it must be set before anything
# imports torch or faiss; an explicit setting by the user wins. On a loaded 2-core machine
# PASSIVE made a 2-thread training step 1.43x and k-means 3.7x faster (docs/performance.md,
# "Training throughput"); on an idle one it cost about 2 % of training throughput
# (docs/decisions.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
