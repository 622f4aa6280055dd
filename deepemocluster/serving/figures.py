"""The prediction figure: a recording's ratings and clusters over time (``predict --timeline``),
and the palette and cluster drawing that the analysis figures (``analysis/plots.py``) share with
it, as PNG files (matplotlib, Agg backend).

Colours: Okabe–Ito for categories and cividis for continuous values, both readable with the
common colour-vision deficiencies; every axis names its quantity and scale. Only imported when a
figure is drawn: prediction alone never loads matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
CONTINUOUS = "cividis"
RATING_SCALE = (1.0, 7.0)
DPI = 90
TIMELINE_PIXELS = (900, 432)  # (width, height) of a timeline PNG, whatever the recording


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
        figsize=(TIMELINE_PIXELS[0] / DPI, TIMELINE_PIXELS[1] / DPI),
        dpi=DPI,
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
        cluster_blocks(band, start_min, end_min, clusters, colours, 0.0, 1.0)
        cluster_legend(band, clusters, colours, "lower left", (1.01, 0.0))
    fig.subplots_adjust(left=0.08, right=0.8, top=0.92, bottom=0.12, hspace=0.08)
    fig.savefig(path)
    plt.close(fig)
    return path


def cluster_blocks(
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


def cluster_legend(
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
