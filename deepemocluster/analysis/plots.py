"""The analysis and prediction figures as PNG files (matplotlib, Agg backend): plain arrays in,
one file out.

Colours: Okabe–Ito for categories and cividis for continuous values, both readable with the
common colour-vision deficiencies; every axis names its quantity and scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from deepemocluster.metrics import ccc  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
CONTINUOUS = "cividis"
RATING_SCALE = (1.0, 7.0)
_DPI = 90
TIMELINE_PIXELS = (900, 432)  # (width, height) of a timeline PNG, whatever the recording


def class_heatmap(
    counts: np.ndarray, cluster_ids: np.ndarray, class_names: np.ndarray, path: Path
) -> Path:
    """Share of each cluster's utterances per class (rows sum to 100 %); rows in the given order."""
    totals = counts.sum(1, keepdims=True)
    shares = 100.0 * counts / np.maximum(totals, 1)
    fig, ax = plt.subplots(
        figsize=(2.0 + 0.6 * len(class_names), 1.6 + 0.28 * len(cluster_ids)), dpi=_DPI
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
        dpi=_DPI,
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
    fig, ax = plt.subplots(figsize=(6.2, 5.2), dpi=_DPI)
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


def training_curves(history: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """Losses, Development CCC per attribute, NMI between epochs, cluster-size spread."""
    panels = (
        ("Training losses", "loss", ("train/loss_ce", "train/loss_ccc", "train/loss_teacher")),
        ("Development CCC", "CCC", tuple(k for k in sorted(history) if k.startswith("dev/ccc_"))),
        ("Cluster stability", "NMI with previous epoch (0–1)", ("cluster/nmi",)),
        ("Cluster sizes", "size CV (std / mean)", ("cluster/size_cv",)),
    )
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=_DPI)
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
        1, len(attributes), figsize=(3.4 * len(attributes), 3.6), dpi=_DPI, squeeze=False
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


def timeline(
    title: str,
    starts: np.ndarray,
    ends: np.ndarray,
    ratings: dict[str, np.ndarray],
    clusters: np.ndarray | None,
    duration_s: float,
    path: Path,
) -> Path:
    """A recording's ratings over time: each segment a bar at its rating from its start to its
    end (a faint line joins their midpoints), the cluster of each segment as a colour band below."""
    fig, (ax, band) = plt.subplots(
        2,
        1,
        figsize=(TIMELINE_PIXELS[0] / _DPI, TIMELINE_PIXELS[1] / _DPI),
        dpi=_DPI,
        sharex=True,
        gridspec_kw={"height_ratios": [5, 1]},
    )
    start_min, end_min = starts / 60, ends / 60
    for (name, values), colour in zip(ratings.items(), OKABE_ITO, strict=False):
        ax.plot((start_min + end_min) / 2, values, color=colour, lw=0.8, alpha=0.5)
        ax.hlines(values, start_min, end_min, color=colour, lw=3, label=name)
    low = min(RATING_SCALE[0], *(v.min() for v in ratings.values()))
    high = max(RATING_SCALE[1], *(v.max() for v in ratings.values()))
    ax.set_ylim(low, high)
    ax.set_xlim(0, max(duration_s, float(ends.max())) / 60)
    ax.set_ylabel("predicted rating (1–7)")
    ax.set_title(f"{title}: emotion over time ({len(starts)} segments)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    band.set_yticks([])
    band.set_ylim(0, 1)
    band.set_xlabel("time in the recording (minutes)")
    if clusters is None:
        band.set_ylabel("no clusters", rotation=0, ha="right", va="center")
    else:
        band.set_ylabel("cluster", rotation=0, ha="right", va="center")
        colours = cluster_colours(int(clusters.max()) + 1)
        _cluster_blocks(band, start_min, end_min, clusters, colours, 0.0, 1.0)
        _cluster_legend(band, clusters, colours, "lower left", (1.01, 0.0))
    fig.subplots_adjust(left=0.08, right=0.8, top=0.92, bottom=0.12, hspace=0.08)
    fig.savefig(path)
    plt.close(fig)
    return path


def recording_strips(
    names: list[str],
    segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    k: int,
    path: Path,
) -> Path:
    """One strip per recording: its segments ((starts, ends, clusters) in seconds) as blocks in
    their cluster's colour along a shared time axis in minutes."""
    fig, ax = plt.subplots(figsize=(10.0, 2.4 + 0.35 * len(names)), dpi=_DPI)
    colours = cluster_colours(k)
    for row, (starts, ends, clusters) in enumerate(segments):
        _cluster_blocks(ax, starts / 60, ends / 60, clusters, colours, row - 0.4, row + 0.4)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, max(float(e.max()) for _, e, _ in segments) / 60)
    ax.set_xlabel("time in the recording (minutes)")
    ax.set_title("Clusters along each recording (white: no segment)")
    _cluster_legend(
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
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=_DPI)
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


def _cluster_blocks(
    ax: plt.Axes,
    start: np.ndarray,
    end: np.ndarray,
    clusters: np.ndarray,
    colours: list,
    low: float,
    high: float,
) -> None:
    """Segments as blocks from ``low`` to ``high`` (data units) in their cluster's colour; a
    block wide enough carries its cluster id in text, so colours need not be told apart."""
    wide = 0.03 * max(float(end.max()), 1e-9)
    for a, b, c in zip(start, end, clusters, strict=True):
        ax.fill_between([a, b], low, high, color=colours[c], lw=0)
        if b - a >= wide:
            ax.text((a + b) / 2, (low + high) / 2, str(c), ha="center", va="center", fontsize=7)


def _cluster_legend(
    ax: plt.Axes, clusters: np.ndarray, colours: list, loc: str, anchor: tuple[float, float]
) -> None:
    """The clusters present, and white for no segment, in the right margin: one column of up
    to 14 entries, more columns in a smaller font beyond."""
    handles = [Patch(color=colours[c], label=f"cluster {c}") for c in sorted(set(clusters))]
    handles.append(Patch(facecolor="white", edgecolor="0.6", label="no segment"))
    columns = -(-len(handles) // 14)
    ax.legend(
        handles=handles, loc=loc, bbox_to_anchor=anchor, fontsize=8 if columns == 1 else 6,
        frameon=False, ncol=columns, columnspacing=0.8, handlelength=1.2,
    )  # fmt: skip


def cluster_colours(k: int) -> list:
    """One light colour per cluster id, unlike the saturated rating lines: Set3 up to 12
    clusters, then tab20, then a cividis ramp (the band also names each cluster in text)."""
    if k <= 12:
        return [plt.get_cmap("Set3")(i) for i in range(k)]
    if k <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(k)]
    return [plt.get_cmap(CONTINUOUS)(i / (k - 1)) for i in range(k)]


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
