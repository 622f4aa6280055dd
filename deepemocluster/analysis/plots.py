"""The analysis figures as PNG files (matplotlib, Agg backend): plain arrays in, one file out.

Colours, the rating scale and the cluster blocks are those of the prediction timeline
(``serving/figures.py``); every axis names its quantity and scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from deepemocluster.metrics import ccc  # noqa: E402
from deepemocluster.serving.figures import (  # noqa: E402  (the palette and pieces shared with it)
    CONTINUOUS,
    DPI,
    OKABE_ITO,
    RATING_SCALE,
    cluster_blocks,
    cluster_colours,
    cluster_legend,
)


def class_heatmap(
    counts: np.ndarray, cluster_ids: np.ndarray, class_names: np.ndarray, path: Path
) -> Path:
    """Share of each cluster's utterances per class (rows sum to 100 %); rows in the given order."""
    totals = counts.sum(1, keepdims=True)
    shares = 100.0 * counts / np.maximum(totals, 1)
    fig, ax = plt.subplots(
        figsize=(2.0 + 0.6 * len(class_names), 1.6 + 0.28 * len(cluster_ids)), dpi=DPI
    )
    image = ax.imshow(shares, cmap=CONTINUOUS, vmin=0, vmax=100, aspect="auto")
    for (r, c), value in np.ndenumerate(shares):
        if totals[r, 0]:
            colour = "black" if value > 55 else "white"
            ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(
        range(len(cluster_ids)),
        [f"{c} (n={int(n)})" for c, n in zip(cluster_ids, totals[:, 0], strict=True)],
        fontsize=7,
    )
    ax.set_xlabel("categorical emotion class")
    ax.set_ylabel("cluster (labelled utterances)")
    ax.set_title("Class mix of each cluster (row %)")
    fig.colorbar(image, ax=ax, label="% of the cluster's utterances")
    return _save(fig, path)


def attribute_boxes(
    clusters: np.ndarray, ratings: dict[str, np.ndarray], order: np.ndarray, path: Path
) -> Path:
    """One panel per attribute: the rating distribution of each cluster, clusters in ``order``."""
    fig, axes = plt.subplots(
        len(ratings),
        1,
        figsize=(max(6.0, 0.35 * len(order) + 2), 2.2 * len(ratings)),
        dpi=DPI,
        sharex=True,
        squeeze=False,
    )
    for ax, (name, values), colour in zip(axes[:, 0], ratings.items(), OKABE_ITO, strict=False):
        groups = [values[clusters == c] for c in order]
        box = ax.boxplot(
            [g if len(g) else [np.nan] for g in groups],
            positions=range(len(order)),
            widths=0.6,
            patch_artist=True,
            medianprops={"color": "black"},
            flierprops={"markersize": 2},
        )
        for patch in box["boxes"]:
            patch.set(facecolor=colour, alpha=0.7)
        ax.axhline(np.median(values), color="grey", ls="--", lw=1, label="median of all")
        ax.set_ylim(*RATING_SCALE)
        ax.set_ylabel(f"{name} (1–7)")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    axes[-1, 0].set_xticks(range(len(order)), [str(c) for c in order], fontsize=7)
    axes[-1, 0].set_xlabel("cluster, ordered by mean arousal (low → high)")
    axes[0, 0].set_title("Ratings per cluster (box: quartiles, whiskers: 1.5 IQR)")
    return _save(fig, path)


def centroid_map(
    valence: np.ndarray,
    arousal: np.ndarray,
    dominance: np.ndarray,
    sizes: np.ndarray,
    cluster_ids: np.ndarray,
    path: Path,
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Each cluster at its mean (valence, arousal): marker area ∝ size, colour = mean dominance;
    ``points`` (valence, arousal) of the utterances are drawn faintly behind."""
    fig, ax = plt.subplots(figsize=(6.2, 5.2), dpi=DPI)
    if points is not None:
        ax.scatter(*points, s=4, color="0.75", label="utterances", zorder=1)
    scale = 600.0 / max(1, sizes.max())
    art = ax.scatter(
        valence,
        arousal,
        s=20 + sizes * scale,
        c=dominance,
        cmap=CONTINUOUS,
        vmin=RATING_SCALE[0],
        vmax=RATING_SCALE[1],
        edgecolors="black",
        linewidths=0.6,
        zorder=2,
    )
    for x, y, c in zip(valence, arousal, cluster_ids, strict=True):
        ax.annotate(str(c), (x, y), fontsize=7, ha="center", va="center", zorder=3)
    for n in _size_legend(sizes):
        ax.scatter([], [], s=20 + n * scale, color="white", edgecolors="black", label=f"{n} utt.")
    ax.set_xlim(*RATING_SCALE)
    ax.set_ylim(*RATING_SCALE)
    ax.set_xlabel("mean valence (1 = negative … 7 = positive)")
    ax.set_ylabel("mean arousal (1 = calm … 7 = active)")
    ax.set_title("Cluster centroids on the valence–arousal plane")
    ax.legend(loc="lower right", fontsize=7, labelspacing=1.2, borderpad=1)
    fig.colorbar(art, ax=ax, label="mean dominance (1–7)")
    return _save(fig, path)


def logged_losses(history: dict[str, list[tuple[int, float]]]) -> tuple[str, ...]:
    """The loss terms a run logged (``train/loss_<name>``, one per term of its objective), in
    the order they come: whatever terms the run's config had."""
    return tuple(k for k in history if k.startswith("train/loss_"))


def training_curves(history: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """Losses (every term the run logged: ``train/loss_<name>``), Development CCC per attribute,
    NMI between epochs, cluster-size spread."""
    panels = (
        ("Training losses", "loss", logged_losses(history)),
        ("Development CCC", "CCC", tuple(k for k in sorted(history) if k.startswith("dev/ccc_"))),
        ("Cluster stability", "NMI with previous epoch (0–1)", ("cluster/nmi",)),
        ("Cluster sizes", "size CV (std / mean)", ("cluster/size_cv",)),
    )
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=DPI)
    for ax, (title, ylabel, keys) in zip(axes.flat, panels, strict=True):
        for key, colour in zip(keys, OKABE_ITO, strict=False):
            if history.get(key):
                steps, values = zip(*history[key], strict=True)
                ax.plot(steps, values, marker="o", ms=3, color=colour, label=key.split("/")[-1])
        extra = _empty_clusters(ax, history) if title == "Cluster sizes" else []
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            handles = ax.get_legend_handles_labels()[0] + extra
            ax.legend(handles=handles, loc="best", fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def predicted_vs_true(
    truth: np.ndarray, predicted: np.ndarray, attributes: list[str], path: Path
) -> Path:
    """One scatter per attribute with the identity line; CCC in each title."""
    fig, axes = plt.subplots(
        1, len(attributes), figsize=(3.4 * len(attributes), 3.6), dpi=DPI, squeeze=False
    )
    for j, (ax, name) in enumerate(zip(axes[0], attributes, strict=True)):
        ax.scatter(truth[:, j], predicted[:, j], s=8, color=OKABE_ITO[j % len(OKABE_ITO)])
        ax.plot(RATING_SCALE, RATING_SCALE, color="grey", ls="--", lw=1, label="y = x")
        ax.set_xlim(*RATING_SCALE)
        ax.set_ylim(*RATING_SCALE)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {name} (1–7)")
        ax.set_ylabel(f"predicted {name} (1–7)")
        ax.set_title(f"{name}: CCC {ccc(truth[:, j], predicted[:, j]):.3f}")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    return _save(fig, path)


def recording_strips(
    names: list[str],
    segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    k: int,
    path: Path,
) -> Path:
    """One strip per recording: its segments ((starts, ends, clusters) in seconds) as blocks in
    their cluster's colour along a shared time axis in minutes."""
    fig, ax = plt.subplots(figsize=(10.0, 2.4 + 0.35 * len(names)), dpi=DPI)
    colours = cluster_colours(k)
    for row, (starts, ends, clusters) in enumerate(segments):
        cluster_blocks(ax, starts / 60, ends / 60, clusters, colours, row - 0.4, row + 0.4)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, max(float(e.max()) for _, e, _ in segments) / 60)
    ax.set_xlabel("time in the recording (minutes)")
    ax.set_title("Clusters along each recording (white: no segment)")
    cluster_legend(
        ax, np.concatenate([c for _, _, c in segments]), colours, "upper left", (1.01, 1.0)
    )
    fig.subplots_adjust(left=0.25, right=0.8, top=1 - 0.5 / fig.get_figheight())
    fig.subplots_adjust(bottom=0.6 / fig.get_figheight())
    fig.savefig(path)
    plt.close(fig)
    return path


def dwell_histogram(seconds: np.ndarray, shuffled_mean: float, path: Path) -> Path:
    """How long a recording stays in one cluster: the distribution of the dwell times, with
    their mean and the mean for the same segments with the clusters shuffled in each recording."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=DPI)
    ax.hist(seconds, bins=min(30, max(5, len(seconds) // 3)), color=OKABE_ITO[0], alpha=0.8)
    ax.axvline(seconds.mean(), color="black", lw=1.5, label=f"mean {seconds.mean():.1f} s")
    ax.axvline(
        shuffled_mean, color=OKABE_ITO[5], ls="--", lw=1.5,
        label=f"shuffled clusters: mean {shuffled_mean:.1f} s",
    )  # fmt: skip
    ax.set_xlabel("dwell time: consecutive segments in one cluster (seconds)")
    ax.set_ylabel("stays in a cluster")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("How long a recording stays in one cluster")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _save(fig, path)


def _empty_clusters(ax: plt.Axes, history: dict[str, list[tuple[int, float]]]) -> list:
    """Empty clusters per epoch as bars on a second y axis; returns their legend handle."""
    if not history.get("cluster/empty"):
        return []
    steps, values = zip(*history["cluster/empty"], strict=True)
    twin = ax.twinx()
    bars = twin.bar(steps, values, color=OKABE_ITO[5], alpha=0.3, label="empty clusters")
    twin.set_ylim(0, max(1, *values) * 1.2)
    twin.set_ylabel("empty clusters")
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    return [bars]


def _size_legend(sizes: np.ndarray) -> list[int]:
    """Two or three round reference sizes for the marker-size legend."""
    top = int(sizes.max())
    return sorted({max(1, top // 4), max(1, top // 2), max(1, top)})


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
