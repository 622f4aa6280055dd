"""The label-efficiency analysis of a grid over ``data.label_fraction``: how much clustering buys
at each share of labelled Train utterances, as a table (mean and 95 % t interval over seeds, and
the paired difference clustering − none) and as a figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from deepemocluster.plots import OKABE_ITO  # noqa: E402
from deepemocluster.study.spec import Param  # noqa: E402

FRACTION, CLUSTERING = "data.label_fraction", "cluster.enabled"
SETTINGS = {True: "clustering", False: "none"}
DIFFERENCE = "clustering − none"


def label_efficiency(
    table: pd.DataFrame, params: tuple[Param, ...], metrics: list[str], clustering_default: bool
) -> pd.DataFrame:
    """Per label fraction and metric: mean and 95 % t interval of each setting over its
    replicates (every other grid parameter, normally the seed), and of the paired difference
    clustering − none over the replicates both settings finished."""
    done = table[table["state"] == "COMPLETE"].copy()
    if CLUSTERING not in done:
        done[CLUSTERING] = clustering_default
    replicate = [p.key for p in params if p.key not in (FRACTION, CLUSTERING)]
    rows = []
    for fraction, group in done.groupby(FRACTION):
        by_setting = {
            enabled: g.set_index(replicate) if replicate else g.reset_index(drop=True)
            for enabled in SETTINGS
            if len(g := group[group[CLUSTERING] == enabled])
        }
        for metric in metrics:
            for enabled, g in by_setting.items():
                rows.append([fraction, metric, SETTINGS[enabled], *mean_interval(g[metric])])
            if len(by_setting) == 2:
                diff = (by_setting[True][metric] - by_setting[False][metric]).dropna()
                rows.append([fraction, metric, DIFFERENCE, *mean_interval(diff)])
    return pd.DataFrame(rows, columns=[FRACTION, "metric", "setting", "n", "mean", "low", "high"])


def mean_interval(values: pd.Series) -> tuple[int, float, float, float]:
    """(n, mean, low, high): the mean and its 95 % Student-t interval (NaN below 2 values)."""
    x = values.dropna().to_numpy(dtype=float)
    if len(x) == 0:
        return 0, np.nan, np.nan, np.nan
    mean = float(x.mean())
    if len(x) < 2:
        return 1, mean, np.nan, np.nan
    sem = float(stats.sem(x))
    if sem == 0.0:
        return len(x), mean, mean, mean
    low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=sem)
    return len(x), mean, float(low), float(high)


def readable_table(table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The table as one would print it: a row per fraction and setting, a column per metric,
    cells "mean [low, high]" (gains signed)."""

    def cell(r) -> str:
        sign = "+" if r.setting == DIFFERENCE else ""
        interval = "" if np.isnan(r.low) else f" [{r.low:{sign}.3f}, {r.high:{sign}.3f}]"
        return f"{r.mean:{sign}.3f}{interval} (n={r.n})"

    cells = table.assign(cell=[cell(r) for r in table.itertuples()])
    wide = cells.pivot_table(
        index=[FRACTION, "setting"], columns="metric", values="cell", aggfunc="first", sort=False
    )
    wide = wide[[m for m in metrics if m in wide.columns]].rename(columns=_label).reset_index()
    wide[FRACTION] = [f"{f:.0%}" for f in wide[FRACTION]]
    return wide.rename(columns={FRACTION: "labelled"})


def label_efficiency_plot(table: pd.DataFrame, metrics: list[str], path: Path) -> Path:
    """One column per metric: Test CCC of each setting against the label fraction (log axis)
    with its 95 % interval as a band and, below, the paired difference with its interval."""
    paired = (table["setting"] == DIFFERENCE).any()
    fractions = sorted(table[FRACTION].unique())
    fig, axes = plt.subplots(
        2 if paired else 1,
        len(metrics),
        figsize=(3.0 * len(metrics), 5.4 if paired else 3.0),
        squeeze=False,
        sharex=True,
        dpi=90,
    )
    for col, metric in enumerate(metrics):
        rows = table[table["metric"] == metric].sort_values(FRACTION)
        top = axes[0, col]
        for colour, setting in zip(OKABE_ITO, SETTINGS.values(), strict=False):
            d = rows[rows["setting"] == setting]
            if len(d):
                top.plot(d[FRACTION], d["mean"], "o-", color=colour, label=setting)
                top.fill_between(d[FRACTION], d["low"], d["high"], color=colour, alpha=0.2)
        top.set_title(_label(metric))
        if paired:
            d = rows[rows["setting"] == DIFFERENCE]
            below = axes[1, col]
            below.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            errors = np.nan_to_num([d["mean"] - d["low"], d["high"] - d["mean"]])
            below.errorbar(
                d[FRACTION], d["mean"], yerr=errors, fmt="o", color=OKABE_ITO[2], capsize=3
            )
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("labelled share of Train (log scale)")
    axes[0, 0].set_ylabel("Test CCC")
    axes[0, 0].legend(title="setting", fontsize=8)
    if paired:
        axes[1, 0].set_ylabel("gain: clustering − none")
    fig.suptitle("Mean over seeds with 95 % t interval; gains paired by seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(metric: str) -> str:
    name = metric.removeprefix("test/ccc_")
    return "mean of the attributes" if name == "mean" else name
