"""The label-efficiency analysis on a hand-made trial table: means, Student-t intervals, the
paired gain per fraction, the printable table and the figure."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from deepemocluster.study.label_efficiency import (
    label_efficiency,
    label_efficiency_plot,
    mean_interval,
    readable_table,
)
from deepemocluster.study.spec import Param

T_975_2DF = 4.302653  # Student t, 97.5th percentile, 2 degrees of freedom (tables)
PARAMS = (
    Param("data.label_fraction", choices=(0.1, 1.0)),
    Param("model.aux_head", choices=("cluster", "none")),
    Param("train.seed", choices=(0, 1, 2)),
)
METRICS = ["test/ccc_arousal", "test/ccc_mean"]
GAIN = "cluster − none"


def table(drop: tuple | None = None) -> pd.DataFrame:
    """Seeds differ a lot (0.0, 0.2, 0.4) but clustering adds 0.10 ± 0.01 at 10 % and nothing
    at 100 %: a paired analysis sees the gain that the seed spread hides."""
    rows = []
    for fraction in (0.1, 1.0):
        for seed, base, wobble in ((0, 0.0, -0.01), (1, 0.2, 0.0), (2, 0.4, 0.01)):
            for head in ("cluster", "none"):
                if drop == (fraction, head, seed):
                    continue
                gain = (0.10 + wobble) if fraction == 0.1 and head == "cluster" else 0.0
                value = base + fraction / 10 + gain
                rows.append(
                    {
                        "trial": len(rows),
                        "state": "COMPLETE",
                        "data.label_fraction": fraction,
                        "model.aux_head": head,
                        "train.seed": seed,
                        "value": value,
                        "test/ccc_arousal": value,
                        "test/ccc_mean": value,
                    }
                )
    return pd.DataFrame(rows)


def cell(le: pd.DataFrame, fraction: float, setting: str) -> pd.Series:
    rows = le[(le["data.label_fraction"] == fraction) & (le["metric"] == "test/ccc_mean")]
    return rows.set_index("setting").loc[setting]


def test_mean_and_student_t_interval():
    n, mean, low, high = mean_interval(pd.Series([1.0, 2.0, 3.0]))
    assert (n, mean) == (3, 2.0)
    assert high - mean == pytest.approx(T_975_2DF * 1.0 / np.sqrt(3), rel=1e-6)
    assert mean - low == pytest.approx(high - mean)
    assert mean_interval(pd.Series([5.0]))[:2] == (1, 5.0)
    assert np.isnan(mean_interval(pd.Series([5.0]))[2])


def test_paired_gain_per_fraction_sees_what_the_seed_spread_hides():
    le = label_efficiency(table(), PARAMS, METRICS, head_default="cluster")
    on, off, gain = (cell(le, 0.1, s) for s in ("cluster", "none", GAIN))
    assert on["mean"] == pytest.approx(0.2 + 0.01 + 0.10)
    assert off["mean"] == pytest.approx(0.2 + 0.01)
    assert gain["n"] == 3 and gain["mean"] == pytest.approx(0.10)
    assert gain["high"] - gain["low"] == pytest.approx(2 * T_975_2DF * 0.01 / np.sqrt(3), rel=1e-4)
    assert off["low"] < on["mean"] < off["high"]  # unpaired, the settings overlap …
    assert gain["low"] > 0  # … paired by seed, the gain is clear
    none_gain = cell(le, 1.0, GAIN)
    assert none_gain["mean"] == pytest.approx(0.0) and none_gain["low"] == none_gain["high"]


def test_a_missing_trial_leaves_its_seed_out_of_the_pairs():
    le = label_efficiency(table(drop=(0.1, "none", 2)), PARAMS, METRICS, head_default="cluster")
    assert cell(le, 0.1, "none")["n"] == 2 and cell(le, 0.1, "cluster")["n"] == 3
    gain = cell(le, 0.1, GAIN)
    assert gain["n"] == 2 and gain["mean"] == pytest.approx(0.10 - 0.005)


def test_without_an_aux_head_parameter_there_is_one_curve_and_no_gain():
    one = table()
    one = one[one["model.aux_head"] == "cluster"].drop(columns="model.aux_head")
    params = (PARAMS[0], PARAMS[2])
    le = label_efficiency(one, params, METRICS, head_default="cluster")
    assert set(le["setting"]) == {"cluster"}


def test_printable_table_and_figure(tmp_path):
    le = label_efficiency(table(), PARAMS, METRICS, head_default="cluster")
    printed = readable_table(le, METRICS)
    assert list(printed.columns) == ["labelled", "setting", "arousal", "mean of the attributes"]
    assert list(printed["labelled"]) == ["10%"] * 3 + ["100%"] * 3
    gain = printed[(printed["labelled"] == "10%") & (printed["setting"] == GAIN)]
    assert gain["arousal"].item().startswith("+0.100 [+0.")
    path = label_efficiency_plot(le, METRICS, tmp_path / "le.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05
