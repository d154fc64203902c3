"""The A/B report: report.md, report.html (plots embedded as PNG) and summary.json.

The folder is written as a whole (a temporary sibling folder renamed into place), so a dashboard
watching it never reads half a report, nor one report's markdown beside another's summary. Plots use matplotlib's object API (no pyplot state, no GUI
backend): ROC curves and calibration curves of both sides (CTR comparisons) and the per-slice
deltas with their 95% intervals.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mdrec.evaluation.ab_statistics import legend
from mdrec.evaluation.html_report import figure_png, html_figures, html_list, html_page, html_table, report_folder
from mdrec.evaluation.metrics import table_to_markdown
from mdrec.evaluation.plots import Curve, draw_reliability, reliability_points
from mdrec.fileio import atomic_write_json, atomic_write_text
from mdrec.records import recorded_path

if TYPE_CHECKING:
    from mdrec.workflows.ab_result import ABResult

_METRIC_COLUMNS = ["slice", "metric", "control", "treatment", "delta", "ci_low", "ci_high", "p", "p_holm",
                   "mde", "test", "verdict"]
REPORT_FILES = ("report.md", "report.html", "summary.json")

METHOD = """\
* Δ = treatment (B) − control (A), on the same rows of the log.
* 95% intervals: percentile intervals of a paired bootstrap that resamples **users** with replacement
  (every event of a drawn user comes along; both sides and all slices share the draws), because one
  user's events are correlated.
* p-values: AUC — DeLong's test (fast midrank algorithm, Sun & Xu 2014) with a user-clustered variance
  (Obuchowski 1997); the other metrics — normal approximation with the bootstrap standard error.
  Holm's step-down correction per metric across the slices.
* Verdict: *better* / *worse* when the Holm-adjusted p-value is below α and the interval excludes 0,
  else *no detectable difference*. Calibration (predicted / observed CTR, 1 is best) has no direction,
  so its verdict is n/a; its distance from 1 (miscalibration = |predicted / observed − 1|) and the
  expected calibration error (ECE, 10 equal-width bins) carry the calibration verdicts. MDE: the smallest |Δ| a level-α test would detect with power 0.8 at this slice's size,
  (z₁₋α/₂ + z₀.₈) × standard error (uncorrected for multiple slices).
* GAUC: impression-weighted mean of per-user AUCs; users with only one class are excluded and counted
  (slices table).
* Retrieval runs: Recall@K and NDCG@K of one query per (user, line) with clicks in the log, against the
  line's full catalogue (the users' training clicks removed), as `mdrec evaluate`; the bootstrap
  resamples users and the p-values use its standard error.
"""


def write_report(result: "ABResult", out: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and summary.json as the folder ``out``; returns their paths.

    The three appear together or not at all (a new folder renamed into place), so a kill mid-way
    never leaves one report's markdown beside another's summary. ``out`` must be a report folder
    of its own: a folder holding anything else is refused rather than replaced.
    """
    out = Path(out)
    paths = {name: out / name for name in REPORT_FILES}
    with report_folder(out, REPORT_FILES, "an A/B report") as tmp:
        figures = _figures(result)
        atomic_write_text(tmp / "report.md", _markdown(result))
        atomic_write_text(tmp / "report.html", _html(result, figures))
        # Paths in summary.json are relative to the report folder or absolute (mdrec.records), so
        # it still reads after the folder moves or from another working directory.
        record = paths["summary.json"]
        atomic_write_json(tmp / "summary.json", {**result.summary(record),
                                                 "files": {k: recorded_path(v, record) for k, v in paths.items()}})
    return paths


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------
def _header_lines(result: "ABResult") -> list[str]:
    s = result.settings
    lines = []
    for role, letter in (("control", "A"), ("treatment", "B")):
        side = result.sides[role]
        model = f", model {side['model']}" if side.get("model") else ""
        lines.append(f"{role} ({letter}): {side['path']} ({side['kind']}{model})")
    total = result.slices.loc["ALL"]
    count = "queries" if "queries" in result.slices.columns else "rows"
    extra = f", {int(total['positives']):,} positives" if "positives" in result.slices.columns else ""
    lines.append(f"data: {s['data']} — {int(total[count]):,} {count}, {int(total['users']):,} users{extra}")
    lines.append(f"paired user bootstrap: {s['n_bootstrap']} resamples, seed {s['seed']}; α = {s['alpha']}")
    return lines


def _markdown(result: "ABResult") -> str:
    parts = [f"# Offline A/B ({result.family}): treatment vs control", ""]
    parts += [f"- {line}" for line in _header_lines(result)]
    parts += ["", "## Verdict per slice", "", table_to_markdown(result.verdict), "", legend(result.settings["alpha"], result.family), ""]
    if result.ips is not None:
        parts += ["## Click rate under each policy (IPS / SNIPS estimates)", "", table_to_markdown(result.ips), "",
                  "Estimates, not measurements: each policy shows a user's logged items with probability "
                  "proportional to its score; intervals from the same user bootstrap.", ""]
    parts += ["## All metrics", "", table_to_markdown(_metric_table(result)), ""]
    parts += ["## Slices", "", table_to_markdown(result.slices), ""]
    if result.notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    parts += ["## Method", "", METHOD, "Plots (ROC, calibration, per-slice deltas): report.html.", ""]
    return "\n".join(parts)


def _metric_table(result: "ABResult") -> pd.DataFrame:
    return result.metrics[[c for c in _METRIC_COLUMNS if c in result.metrics.columns]].set_index("slice")


def _html(result: "ABResult", figures: dict[str, str]) -> str:
    esc = html.escape
    body = [f"<h1>Offline A/B ({esc(result.family)}): treatment vs control</h1>", *html_list(_header_lines(result)),
            "<h2>Verdict per slice</h2>", html_table(result.verdict),
            f"<p class='legend'>{esc(legend(result.settings['alpha'], result.family))}</p>", *html_figures(figures)]
    if result.ips is not None:
        body += ["<h2>Click rate under each policy (IPS / SNIPS estimates)</h2>", html_table(result.ips)]
    body += ["<h2>All metrics</h2>", html_table(_metric_table(result)), "<h2>Slices</h2>",
             html_table(result.slices)]
    if result.notes:
        body += ["<h2>Notes</h2>", *html_list(result.notes)]
    body += ["<h2>Method</h2>",
             *html_list(item.strip() for item in METHOD.replace("\n  ", " ").split("* ") if item.strip())]
    return html_page("mdrec offline A/B", body)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------
def _figures(result: "ABResult") -> dict[str, str]:
    figures = {}
    if result.curves:
        figures["ROC and calibration curves (all rows)"] = figure_png(_curves_figure(result.curves))
    figures["Deltas per slice with 95% intervals"] = figure_png(_delta_figure(result.metrics))
    return figures


def _curves_figure(curves: dict):
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    y = curves["labels"]
    figure = Figure(figsize=(10, 4.2))
    roc, cal = figure.subplots(1, 2)
    calibration = []
    for role, letter in (("control", "A"), ("treatment", "B")):
        p = curves[role]
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            roc.plot(fpr, tpr, label=f"{role} ({letter})")
            calibration.append(Curve(f"{role} ({letter})", *reliability_points(y, p)))
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    roc.legend(loc="lower right")
    draw_reliability(cal, calibration, "calibration")
    return figure


def _delta_figure(metrics: pd.DataFrame):
    from matplotlib.figure import Figure

    shown = [m for m in dict.fromkeys(metrics["metric"]) if m != "calibration"][:4]
    slices = list(dict.fromkeys(metrics["slice"]))
    figure = Figure(figsize=(3.2 * len(shown), 0.32 * len(slices) + 1.4))
    axes = np.atleast_1d(figure.subplots(1, len(shown), sharey=True))
    colors = {"better": "tab:green", "worse": "tab:red"}
    for ax, metric in zip(axes, shown):
        part = metrics[metrics["metric"] == metric].set_index("slice").reindex(slices)
        ypos = np.arange(len(slices))[::-1]
        low = (part["delta"] - part["ci_low"]).clip(lower=0).fillna(0)
        high = (part["ci_high"] - part["delta"]).clip(lower=0).fillna(0)
        for i, name in enumerate(slices):
            ax.errorbar(part["delta"].iloc[i], ypos[i], xerr=[[low.iloc[i]], [high.iloc[i]]], fmt="o",
                        color=colors.get(part["verdict"].iloc[i], "tab:grey"), capsize=3, ms=4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(title=f"Δ {metric} (B − A)", yticks=ypos, yticklabels=slices)
        ax.tick_params(axis="y", labelsize=8)
    figure.text(0.5, -0.02, "green: better, red: worse, grey: no detectable difference (Holm, α)",
                ha="center", fontsize=8)
    return figure
