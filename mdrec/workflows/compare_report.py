"""The ``mdrec compare --report`` folder: report.md, report.html (plots embedded as PNG), table.csv.

Plots: each line's AUC per model, a point per run (seed) with the mean ± std over the model's runs,
the sanity rows beside them; and a reliability diagram per line (ALL first), one curve per run,
coloured by model. Written as a whole (:func:`mdrec.evaluation.html_report.report_folder`).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mdrec.evaluation.html_report import figure_png, html_figures, html_list, html_page, html_table, report_folder
from mdrec.evaluation.metrics import table_to_markdown
from mdrec.evaluation.plots import Curve, draw_reliability, draw_seed_spread
from mdrec.fileio import atomic_write_text
from mdrec.workflows.comparison import BASELINE, Comparison, aggregate_by_model, model_groups

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILES = ("report.md", "report.html", "table.csv")
WHAT = "a compare report"
READING = (
    "auc, gauc (impression-weighted mean of per-user AUCs), logloss: all rows of the log; auc[d]: line d only.",
    "calib[d]: mean predicted / observed click rate on line d (1 is calibrated, above 1 over-predicts).",
    f"Sanity rows (model '{BASELINE}'): fitted on the first run's training file with the settings it chose on "
    "validation.",
    "Mean ± std: sample std over the runs of one model (e.g. seeds); one run claims no spread.",
    "Reliability diagrams: each run's scores cut into 10 quantile bins; a calibrated model sits on the diagonal.",
)


def write_compare_report(comparison: "Comparison", out: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and table.csv as the folder ``out``; returns their paths.

    The three appear together or not at all; a folder holding other files is refused.
    """
    out = Path(out)
    paths = {name: out / name for name in REPORT_FILES}
    with report_folder(out, REPORT_FILES, WHAT) as tmp:
        figures = _figures(comparison)
        atomic_write_text(tmp / "report.md", _markdown(comparison))
        atomic_write_text(tmp / "report.html", _html(comparison, figures))
        atomic_write_text(tmp / "table.csv", comparison.table.to_csv())
    return paths


def lines_of(comparison: "Comparison") -> list[str]:
    """"ALL", then each business line, in the table's order."""
    return ["ALL"] + [c[len("auc["):-1] for c in comparison.table.columns if c.startswith("auc[")]


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------
def _title(comparison: "Comparison") -> str:
    return f"mdrec compare: {(comparison.table['model'] != BASELINE).sum()} runs on {comparison.data}"


def _sections(comparison: "Comparison") -> list[tuple[str, pd.DataFrame]]:
    """(heading, table) in report order; the spread over seeds only when a model has several runs."""
    sections = [("Runs and sanity rows", comparison.table)]
    if model_groups(comparison.table).duplicated().any():
        sections.append(("Mean ± std over the runs of each model", aggregate_by_model(comparison.table)))
    return sections


def _markdown(comparison: "Comparison") -> str:
    parts = [f"# {_title(comparison)}", ""]
    for heading, table in _sections(comparison):
        parts += [f"## {heading}", "", table_to_markdown(table), ""]
    parts += ["## How to read this", ""] + [f"- {item}" for item in READING]
    parts += ["", "Plots (AUC per line over seeds, reliability diagram per line): report.html.", ""]
    return "\n".join(parts)


def _html(comparison: "Comparison", figures: dict[str, str]) -> str:
    body = [f"<h1>{html.escape(_title(comparison))}</h1>"]
    for heading, table in _sections(comparison):
        body += [f"<h2>{html.escape(heading)}</h2>", html_table(table)]
    body += html_figures(figures)
    body += ["<h2>How to read this</h2>", *html_list(READING, css="legend")]
    return html_page("mdrec compare", body)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------
def _figures(comparison: "Comparison") -> dict[str, str]:
    figures = {"AUC per line (points: runs; bars: mean ± std over a model's runs)": figure_png(_auc_figure(comparison))}
    for line in dict.fromkeys(comparison.reliability["line"]):
        figures[f"Reliability diagram: {line}"] = figure_png(_reliability_figure(comparison, line))
    return figures


def _auc_figure(comparison: "Comparison") -> "Figure":
    from matplotlib.figure import Figure

    table = comparison.table
    lines = lines_of(comparison)
    groups = model_groups(table)
    values = pd.concat([pd.DataFrame({"group": groups.to_numpy(), "category": line,
                                      "value": table["auc" if line == "ALL" else f"auc[{line}]"].to_numpy(float)})
                        for line in lines], ignore_index=True)
    figure = Figure(figsize=(max(6.0, 1.4 * len(lines) + 2.5), 4.2))
    ax = figure.subplots()
    draw_seed_spread(ax, values, categories=lines, groups=list(dict.fromkeys(groups)), ylabel="AUC")
    ax.set_title("AUC per line")
    return figure


def _reliability_figure(comparison: "Comparison", line: str) -> "Figure":
    from matplotlib.figure import Figure

    points = comparison.reliability[comparison.reliability["line"] == line]
    colors = {model: f"C{i % 10}" for i, model in enumerate(dict.fromkeys(comparison.reliability["model"]))}
    curves, named = [], set()
    for _, part in points.groupby("run", sort=False):
        model = part["model"].iloc[0]
        curves.append(Curve(model, part["predicted"].to_numpy(), part["observed"].to_numpy(), colors[model],
                            legend=model not in named))
        named.add(model)
    figure = Figure(figsize=(5, 4.4))
    draw_reliability(figure.subplots(), curves, f"{line}: one curve per run")
    return figure
