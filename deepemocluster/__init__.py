"""DeepEmoCluster: semi-supervised speech emotion recognition with per-epoch deep clustering."""

import os

# Idle OpenMP threads sleep instead of spinning. Both runtimes (torch's libgomp and the one the
# faiss-cpu wheel brings) read this once, when they load, so it must be set before anything
# imports torch or faiss; an explicit setting by the user wins. On a shared 2-core machine one
# competing process made a 2-thread training step 1.12x and k-means 2x faster with PASSIVE, and
# heavier load 1.43x and 3.8x; on an idle machine PASSIVE cost about 2 % of training throughput
# (docs/performance.md, "OpenMP wait policy").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
