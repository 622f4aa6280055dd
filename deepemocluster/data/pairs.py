"""Which utterances count as "same" for the Siamese head, and balanced same/different pairs.

A pair is *same* when both utterances have the same categorical emotion class (corpora with
classes), or else the same low/mid/high bin of one attribute. Labels are small ints with a fixed
meaning across splits and corpora (position in ``CLASS_CODES``, or bin index), −1 = no
usable label (unlabelled, no class, or ``X``: annotators did not agree).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepemocluster.data.manifest import Utterance

CLASS_CODES = "ASHUFDCNO"  # MSP-Podcast EmoClass codes that are a class (X = no agreement)
NO_LABEL = -1


def pair_labels(
    utterances: Sequence[Utterance],
    kind: str = "auto",
    attribute: str = "arousal",
    edges: Sequence[float] = (3.0, 5.0),
) -> np.ndarray:
    """(len(utterances),) pair labels; ``kind`` is class | bin | auto (class when any utterance
    has a class, else bin: ``np.digitize`` of ``attribute`` on ``edges``, 0 = low)."""
    if kind == "auto":
        kind = "class" if any(u.emo_class for u in utterances) else "bin"
    if kind == "class":
        return np.array(
            [CLASS_CODES.find(u.emo_class) if u.emo_class else NO_LABEL for u in utterances],
            dtype=np.int64,
        )
    ratings = [getattr(u, attribute) for u in utterances]
    return np.array(
        [NO_LABEL if r is None else int(np.digitize(r, edges)) for r in ratings], dtype=np.int64
    )


def sample_pairs(
    labels: np.ndarray,
    n_pairs: int,
    rng: np.random.Generator,
    owners: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``n_pairs // 2`` same and as many different pairs among the items with a label ≥ 0.

    Pairs are drawn uniformly (with replacement only when too few exist) from all eligible
    unordered pairs; two items of one ``owner`` (chunks of one utterance) never make a pair, so a
    "same" pair always spans two utterances. Returns (left, right, same) index arrays, or None
    when the items allow no same pair or no different pair.
    """
    items = np.flatnonzero(labels >= 0)
    owners = np.arange(len(labels)) if owners is None else np.asarray(owners)
    g, o = labels[items], owners[items]
    upper = np.triu(o[:, None] != o[None, :], 1)
    same_label = g[:, None] == g[None, :]
    half = n_pairs // 2
    drawn = []
    for mask in (upper & same_label, upper & ~same_label):
        candidates = np.argwhere(mask)
        if len(candidates) == 0 or half == 0:
            return None
        drawn.append(candidates[rng.choice(len(candidates), half, replace=len(candidates) < half)])
    pairs = np.concatenate(drawn)
    same = np.repeat([True, False], half)
    return items[pairs[:, 0]], items[pairs[:, 1]], same
