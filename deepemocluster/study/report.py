"""The study report under ``runs/<study>/report/``: every counted trial (``trials.csv``), the
summary (``summary.json``), the label-efficiency table and figure of a grid over
``data.label_fraction``, Optuna's importance and history plots of a search, and one HTML page
with all of it. Read only from the Optuna storage, so any worker can write it at any time."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from deepemocluster.analysis import report as html_report
from deepemocluster.study.label_efficiency import (
    FRACTION,
    label_efficiency,
    label_efficiency_plot,
    readable_table,
)
from deepemocluster.study.objective import DUPLICATE_ATTR, ERROR_ATTR, RUN_ID_ATTR, WORKER_ATTR
from deepemocluster.study.spec import Param, StudySpec
from deepemocluster.study.store import (
    counted_trials,
    is_retry,
    planned_trials,
    quiet_experimental,
)

log = logging.getLogger("deepemocluster")


def write_report(
    study: optuna.Study,
    spec: StudySpec,
    params: tuple[Param, ...],
    attributes: list[str],
    head_default: str,
    folder: Path,
) -> dict:
    """Write every file of the report into ``folder``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    metrics = [f"test/ccc_{a}" for a in attributes] + ["test/ccc_mean"]
    table = trial_table(counted_trials(trials, spec.sampler == "grid"), params, metrics)
    table.to_csv(folder / "trials.csv", index=False)
    summary = summarise(trials, table, spec, params)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    sections = [
        html_report.Section("Summary", bullets=summary_lines(summary)),
        html_report.Section(
            "Trials",
            "One row per trial that counts (a trial that died and was retried is replaced by its "
            "retry, named in retry_of). value: the best Development CCC mean (what the study "
            "optimises); test/*: Test CCC of the best-Development checkpoint.",
            table=_html_table(table),
        ),
    ]
    if spec.sampler == "grid" and any(p.key == FRACTION for p in params):
        le = label_efficiency(table, params, metrics, head_default)
        le.to_csv(folder / "label_efficiency.csv", index=False)
        readable = readable_table(le, metrics)
        (folder / "label_efficiency.md").write_text(markdown(readable))
        figure = label_efficiency_plot(le, metrics, folder / "label_efficiency.png")
        sections.append(
            html_report.Section(
                "Label efficiency",
                "Test CCC against the labelled share of Train (log axis), mean and 95 % t "
                "interval over the replicates (seeds), per model.aux_head; the lower row is "
                "each head's gain over none, paired by seed: an interval above zero means the "
                "head (clustering) helps at that fraction.",
                table=_html_table(readable),
                image=figure,
            )
        )
    if spec.sampler == "tpe":
        for title, path in search_plots(study, folder).items():
            sections.append(html_report.Section(title, image=path))
    html_report.render(f"Study {spec.name}", sections, folder / "report.html")
    return summary


def trial_table(
    trials: list[FrozenTrial], params: tuple[Param, ...], metrics: list[str]
) -> pd.DataFrame:
    """One row per trial: its parameters, value, test metrics and links."""
    rows = []
    for t in trials:
        history = t.system_attrs.get("retry_history", [])
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                **{p.key: t.params.get(p.key) for p in params},
                "value": t.value,
                **{m: t.user_attrs.get(m) for m in metrics},
                "best_epoch": t.user_attrs.get("best_epoch"),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "retry_of": history[0] if history else None,
                "worker": t.user_attrs.get(WORKER_ATTR),
                "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
                "error": t.user_attrs.get(ERROR_ATTR),
            }
        )
    return pd.DataFrame(rows)


def summarise(
    trials: list[FrozenTrial], table: pd.DataFrame, spec: StudySpec, params: tuple[Param, ...]
) -> dict:
    """Counts over the whole study: what finished, what died and was retried, what is left."""
    states = table["state"].value_counts() if len(table) else pd.Series(dtype=int)
    complete = table[table["state"] == "COMPLETE"]
    best = complete.loc[complete["value"].idxmax()] if len(complete) else None
    return {
        "study": spec.name,
        "sampler": spec.sampler,
        "planned": planned_trials(spec, params),
        "counted": len(table),
        **{s.lower(): int(states.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "retried": {
            str(t.system_attrs["retry_history"][-1]): t.number for t in trials if is_retry(t)
        },
        "duplicates_skipped": sum(DUPLICATE_ATTR in t.user_attrs for t in trials),
        "best_trial": None if best is None else int(best["trial"]),
        "best_value": None if best is None else float(best["value"]),
        "failures": {
            str(r.trial): r.error for r in table.itertuples() if r.state == TrialState.FAIL.name
        },
    }


def summary_lines(summary: dict) -> list[str]:
    lines = [
        f"{summary['counted']} of {summary['planned']} planned trials: {summary['complete']} "
        f"complete, {summary['pruned']} pruned, {summary['fail']} failed, "
        f"{summary['running']} still running.",
    ]
    if summary["retried"]:
        pairs = ", ".join(f"{a} → {b}" for a, b in summary["retried"].items())
        lines.append(
            f"{len(summary['retried'])} trial(s) died or were stopped and retried: {pairs}."
        )
    if summary["best_trial"] is not None:
        lines.append(
            f"Best Development CCC mean: {summary['best_value']:.4f} (trial {summary['best_trial']})."
        )
    lines += [f"trial {n} failed: {error}" for n, error in summary["failures"].items()]
    return lines


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (for docs and notes)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame) -> html_report.Table:
    return html_report.Table(list(df.columns), [list(r.values()) for r in df.to_dict("records")])


def search_plots(study: optuna.Study, folder: Path) -> dict[str, Path]:
    """Optuna's optimisation history and parameter importances (PED-ANOVA: no scikit-learn
    needed) as PNGs; a plot that needs more finished trials than there are is left out."""
    import matplotlib.pyplot as plt  # the Agg backend is chosen by deepemocluster.plots
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    plots = {
        "Optimisation history": (plot_optimization_history, {}, "history.png"),
        "Parameter importances": (
            plot_param_importances,
            {"evaluator": PedAnovaImportanceEvaluator()},
            "importance.png",
        ),
    }
    written = {}
    for title, (plot, kwargs, name) in plots.items():
        try:
            with quiet_experimental():
                ax = plot(study, **kwargs)
        except (ValueError, RuntimeError) as e:
            log.warning("study report: no %s plot (%s)", title.lower(), e)
            continue
        ax.figure.savefig(folder / name, dpi=90, bbox_inches="tight")
        plt.close(ax.figure)
        written[title] = folder / name
    return written
