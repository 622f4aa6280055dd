"""Every figure decodes as a real, non-blank, small PNG; the report inlines them and its tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from deepemocluster.analysis import plots, report


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("figures")
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, 6, 120)
    ratings = {a: rng.uniform(1, 7, 120) for a in ("arousal", "valence", "dominance")}
    order = np.arange(6)
    history = {
        "train/loss_ce": [(1, 2.0), (2, 1.5), (3, 1.2)],
        "train/loss_ccc": [(1, 0.8), (2, 0.6), (3, 0.5)],
        "dev/ccc_arousal": [(1, 0.2), (2, 0.4), (3, 0.5)],
        "cluster/nmi": [(2, 0.4), (3, 0.6)],
        "cluster/size_cv": [(1, 0.5), (2, 0.4), (3, 0.4)],
        "cluster/empty": [(1, 0.0), (2, 1.0), (3, 0.0)],
    }
    truth = rng.uniform(1, 7, (40, 3))
    return {
        "heatmap": plots.class_heatmap(
            rng.integers(0, 20, (6, 5)), order, np.array(list("AHNSU")), tmp_path / "h.png"
        ),
        "boxes": plots.attribute_boxes(clusters, ratings, order, tmp_path / "b.png"),
        "centroids": plots.centroid_map(
            *rng.uniform(2, 6, (3, 6)), np.bincount(clusters), order, tmp_path / "c.png"
        ),
        "curves": plots.training_curves(history, tmp_path / "t.png"),
        "scatter": plots.predicted_vs_true(
            truth,
            truth + rng.normal(0, 0.5, truth.shape),
            ["arousal", "valence", "dominance"],
            tmp_path / "s.png",
        ),
    }


def test_every_figure_is_a_real_png(figures, assert_png):
    for path in figures.values():
        assert_png(path)


def test_report_is_self_contained_with_headings_tables_and_images(figures, tmp_path):
    sections = [
        report.Section("Summary", bullets=["first <finding>", "second"]),
        report.Section(
            "Numbers",
            "how to read",
            table=report.Table(["k", "v"], [["a", 1.23456], ["b", np.nan]]),
        ),
        *(report.Section(name, "caption", image=path) for name, path in figures.items()),
    ]
    text = report.render("Run & report", sections, tmp_path / "r.html").read_text()
    assert "<h1>Run &amp; report</h1>" in text
    assert re.findall(r"<h2>(.*?)</h2>", text) == ["Summary", "Numbers", *figures]
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', text)) == len(figures)
    assert "<li>first &lt;finding&gt;</li>" in text
    assert '<td class="num">1.23</td>' in text and '<td class="num">–</td>' in text
    assert "file:" not in text and "http" not in text  # nothing outside the file


def test_verdict_compares_effect_sizes_with_the_shuffled_range():
    summary = {
        "n_labelled": 40,
        "n_utterances": 60,
        "split": "Train",
        "k": 4,
        "epoch": 3,
        "observed": {"class/cramers_v": 0.40, "arousal/epsilon2": 0.02},
        "shuffled_high": {"class/cramers_v": 0.25, "arousal/epsilon2": 0.05},
        "chi2_low_expected_share": 0.5,
    }
    lines = report.verdict(summary)
    assert lines[0] == "40 labelled of 60 utterances of Train in 4 clusters (epoch 3)."
    assert lines[1].endswith("0.400, shuffled clusters reach 0.250: a dependency.")
    assert lines[2].endswith("no evidence of a dependency.")
    assert lines[3].startswith("50% of the χ² test's expected counts are below 5")
    assert len(report.verdict(summary | {"chi2_low_expected_share": None})) == 3


def test_the_loss_panel_plots_every_term_the_run_logged():
    history = {
        "train/loss_ce": [(1, 1.0)],
        "dev/ccc_arousal": [(1, 0.2)],
        "train/loss_pair": [(1, 0.5)],
        "train/loss_readout": [(1, 0.7)],
        "time/epoch_s": [(1, 3.0)],
    }
    assert plots.logged_losses(history) == (
        "train/loss_ce",
        "train/loss_pair",
        "train/loss_readout",
    )
