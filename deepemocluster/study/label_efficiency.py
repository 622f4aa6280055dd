"""The label-efficiency analysis of a grid over ``data.label_fraction``: how much an auxiliary
head (``model.aux_head``: clustering, or the Siamese pairs) buys over the regressor alone
(``none``) at each share of labelled Train utterances, as a table (mean and 95 % t interval over
seeds, and the gain paired by seed) and as a figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from deepemocluster.analysis.plots import OKABE_ITO  # noqa: E402
from deepemocluster.study.spec import Param  # noqa: E402

FRACTION, HEAD = "data.label_fraction", "model.aux_head"
BASELINE = "none"  # the regressor alone
COLUMNS = [FRACTION, "metric", "setting", "n", "mean", "low", "high"]


def gain_label(head: str) -> str:
    return f"{head} − {BASELINE}"


def label_efficiency(
    table: pd.DataFrame, params: tuple[Param, ...], metrics: list[str], head_default: str
) -> pd.DataFrame:
    """Per label fraction and metric: mean and 95 % t interval of each head over its replicates
    (every other grid parameter, normally the seed), and of each head's gain over ``none``,
    paired over the replicates both finished. ``head_default``: the head when the grid does not
    vary it."""
    done = table[table["state"] == "COMPLETE"].copy()
    if HEAD not in done:
        done[HEAD] = head_default
    replicate = [p.key for p in params if p.key not in (FRACTION, HEAD)]
    heads = sorted(done[HEAD].unique(), key=lambda h: (h == BASELINE, h))  # baseline last
    rows = []
    for fraction, group in done.groupby(FRACTION):
        by_head = {
            head: g.set_index(replicate) if replicate else g.reset_index(drop=True)
            for head in heads
            if len(g := group[group[HEAD] == head])
        }
        for metric in metrics:
            for head, g in by_head.items():
                rows.append([fraction, metric, head, *mean_interval(g[metric])])
            for head, g in by_head.items():
                if head != BASELINE and BASELINE in by_head:
                    gain = (g[metric] - by_head[BASELINE][metric]).dropna()
                    rows.append([fraction, metric, gain_label(head), *mean_interval(gain)])
    return pd.DataFrame(rows, columns=COLUMNS)


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
        sign = "+" if _is_gain(r.setting) else ""
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
    """One column per metric: Test CCC of each head against the label fraction (log axis) with
    its 95 % interval as a band and, below, each head's paired gain over ``none``."""
    heads = [s for s in dict.fromkeys(table["setting"]) if not _is_gain(s)]
    colours = dict(zip(heads, OKABE_ITO, strict=False))
    gains = [h for h in heads if gain_label(h) in set(table["setting"])]
    fractions = sorted(table[FRACTION].unique())
    fig, axes = plt.subplots(
        2 if gains else 1,
        len(metrics),
        figsize=(3.0 * len(metrics), 5.4 if gains else 3.0),
        squeeze=False,
        sharex=True,
        dpi=90,
        layout="constrained",
    )
    for col, metric in enumerate(metrics):
        rows = table[table["metric"] == metric].sort_values(FRACTION)
        for head in heads:
            d = rows[rows["setting"] == head]
            axes[0, col].plot(d[FRACTION], d["mean"], "o-", color=colours[head], label=head)
            axes[0, col].fill_between(
                d[FRACTION], d["low"], d["high"], color=colours[head], alpha=0.2
            )
        axes[0, col].set_title(_label(metric))
        for head in gains:
            d = rows[rows["setting"] == gain_label(head)]
            errors = np.nan_to_num([d["mean"] - d["low"], d["high"] - d["mean"]])
            axes[1, col].errorbar(
                d[FRACTION], d["mean"], yerr=errors, fmt="o", color=colours[head], capsize=3
            )
            axes[1, col].axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xlim(fractions[0] / 1.5, fractions[-1] * 1.5)  # one fraction has no range
            ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("labelled share of Train (log scale)")
    axes[0, 0].set_ylabel("Test CCC")
    axes[0, 0].legend(title="model.aux_head", fontsize=8)
    if gains:
        axes[1, 0].set_ylabel(f"gain over {BASELINE} (paired)")
    fig.suptitle("Mean over seeds with 95 % t interval; gains paired by seed", fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(metric: str) -> str:
    name = metric.removeprefix("test/ccc_")
    return "mean of the attributes" if name == "mean" else name


def _is_gain(setting: str) -> bool:
    return setting.endswith(gain_label(""))
