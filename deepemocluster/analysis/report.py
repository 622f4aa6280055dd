"""The analysis report: one self-contained HTML page (figures inlined as base64, so it opens
offline and travels as one file) that says in words how to read each table and figure."""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepemocluster.config.schema import ATTRIBUTES

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.wide { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; font-size: 0.9rem; }
"""


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]

    def write_csv(self, path: Path) -> Path:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.header)
            writer.writerows(self.rows)
        return path


@dataclass(frozen=True)
class Section:
    """A heading, a short "how to read this" text, then optionally a table and/or a figure."""

    title: str
    text: str = ""
    bullets: Sequence[str] = ()
    table: Table | None = None
    image: Path | None = None


def analysis_report(
    title: str,
    summary: dict,
    tables: dict[str, Table],
    figures: dict[str, Path],
    path: Path,
    extra: Sequence[Section] = (),
) -> Path:
    """The page for one analysis: ``tables`` has ``settings``, ``tests``, ``clusters`` and
    ``config``; ``figures`` any of the keys of ``CAPTIONS``; ``extra`` sections (the
    per-recording ones) come before the configuration."""
    sections = [
        Section("Summary", bullets=verdict(summary)),
        Section("Run settings", table=tables["settings"]),
        Section(
            "Dependency tests",
            "Each statistic for the real clusters and for the same clusters with their "
            "utterances shuffled (sizes and labels kept, any link broken): an observed value "
            "outside the shuffled 95 % range means a dependency. p-values (chi2_p, kruskal_p): "
            "small = dependent; Cramér's V, NMI and ε²: 0 = independent, 1 = determined.",
            table=tables["tests"],
        ),
        Section(
            "Clusters",
            "One row per cluster, ordered by mean arousal: size (all utterances, and the "
            "labelled ones the statistics use), rating moments on the 1–7 scale, class counts.",
            table=tables["clusters"],
        ),
    ]
    sections += [
        Section(heading.format(**summary), text, image=figures[key])
        for key, (heading, text) in CAPTIONS.items()
        if key in figures
    ]
    sections += [*extra, Section("Full configuration", table=tables["config"])]
    return render(title, sections, path)


CAPTIONS = {
    "heatmap": (
        "Class mix per cluster",
        "Each row is one cluster (ordered by mean arousal) and sums to 100 %. A cluster that "
        "specialises in a class shows one bright cell; rows that all look like the overall "
        "class mix mean the clusters ignore the class.",
    ),
    "boxes": (
        "Ratings per cluster",
        "Arousal, valence and dominance of each cluster's utterances, clusters ordered by mean "
        "arousal. Boxes that climb from left to right in a panel mean the clusters separate "
        "that attribute; boxes all around the dashed overall median mean not.",
    ),
    "centroids": (
        "Centroids on the valence–arousal plane",
        "Each circle is a cluster at its mean valence and arousal, its area proportional to its "
        "size, its colour its mean dominance; grey dots are the utterances. Circles spread over "
        "the plane mean the clusters cover different emotions; circles piled at the centre "
        "mean they do not.",
    ),
    "curves": (
        "Training curves",
        "Losses, Development CCC per attribute, the NMI between consecutive epochs' clusterings "
        "(near 1: the clusters have settled) and the spread of cluster sizes (a rising CV or "
        "empty clusters: a few clusters absorb most chunks).",
    ),
    "scatter": (
        "Predicted vs true on {test_split}",
        "Model predictions against the ratings of the test split; the dashed line is perfect "
        "agreement, the CCC is in each title.",
    ),
}


def verdict(summary: dict) -> list[str]:
    """Plain-language reading of each effect size against the shuffled baseline."""
    lines = [
        f"{summary['n_labelled']} labelled of {summary['n_utterances']} utterances of "
        f"{summary['split']} in {summary['k']} clusters (epoch {summary['epoch']})."
    ]
    labels = {"class/cramers_v": "Cramér's V with the emotion class"} | {
        f"{a}/epsilon2": f"ε² of {a}" for a in ATTRIBUTES
    }
    for key, label in labels.items():
        if key not in summary["observed"]:
            continue
        value, high = summary["observed"][key], summary["shuffled_high"][key]
        reading = "a dependency" if value > high else "no evidence of a dependency"
        lines.append(f"{label}: {value:.3f}, shuffled clusters reach {high:.3f}: {reading}.")
    low = summary["chi2_low_expected_share"]
    if low is not None and low > 0.2:
        lines.append(
            f"{low:.0%} of the χ² test's expected counts are below 5: its p-value is rough, "
            "trust the comparison with shuffled clusters."
        )
    return lines


def render(title: str, sections: Sequence[Section], path: Path) -> Path:
    body = "\n".join(_section(s) for s in sections)
    path.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
    return path


def _section(s: Section) -> str:
    parts = [f"<section><h2>{html.escape(s.title)}</h2>"]
    if s.text:
        parts.append(f'<p class="note">{html.escape(s.text)}</p>')
    if s.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in s.bullets) + "</ul>")
    if s.table is not None:
        parts.append(f'<div class="wide">{_table(s.table)}</div>')
    if s.image is not None:
        data = base64.b64encode(s.image.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{html.escape(s.title)}" src="data:image/png;base64,{data}">')
    return "\n".join(parts) + "</section>"


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{html.escape('' if value is None else str(value))}</td>"
    text = "–" if value != value else f"{value:.3g}"  # NaN → dash
    if isinstance(value, int):
        text = str(value)
    return f'<td class="num">{text}</td>'
