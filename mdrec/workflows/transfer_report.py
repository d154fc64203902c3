"""Transfer reports: test AUC by the user's target-line history, as report.md and report.html.

Two views of the cold-start question (does the source line help where the target line knows
little?): one transferred run (``mdrec transfer --task ctr`` writes RUN/report/: the model and its
sanity rows by slice) and several variants over seeds (:mod:`mdrec.workflows.transfer_variants`: the demo's
and bench/transfer.py's table). Each folder is written as a whole
(:func:`mdrec.evaluation.html_report.report_folder`).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from mdrec.evaluation.html_report import figure_png, html_figures, html_list, html_page, html_table, report_folder
from mdrec.evaluation.metrics import table_to_markdown
from mdrec.evaluation.plots import draw_seed_spread
from mdrec.evaluation.tables import mean_std_table
from mdrec.fileio import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The test slices every transfer table reports, in this order (rows of mdrec.workflows.transfer_slices).
SLICES = ("ALL", "target history 0", "target history 1-3", "target history 4+", "with source history",
          "no source history")
REPORT_FILES = ("report.md", "report.html")
WHAT = "a transfer report"
READING = (
    "target history 0 / 1-3 / 4+: the user's training events in the target line; transfer should help most "
    "at 0 and 1-3, where the target line knows little.",
    "with / no source history: whether the source line (the pretraining log) knew the user; users it never "
    "saw read an empty sequence, so their rows show the fallback rather than averaging it away.",
    "Sanity rows: user+item mean and first-order logistic, fitted on the run's training file; a model that "
    "does not beat them on a slice has learnt nothing there the counts did not know.",
    "AUC is undefined (shown as -) on a slice with one class; its rows count still says how large it is.",
)


def write_slices_report(table: pd.DataFrame, out: str | Path, *, title: str) -> dict[str, Path]:
    """One run's test metrics by slice as the folder ``out`` (report.md, report.html); their paths.

    ``table``: :func:`mdrec.workflows.transfer_slices.ctr_slices`' frame: index slice, column ``model`` ("model"
    or a sanity row's name), then rows, auc and the other metrics.
    """
    slices = list(dict.fromkeys(table.index.astype(str)))
    auc = table.reset_index().pivot(index="slice", columns="model", values="auc")
    auc = auc.reindex(index=slices, columns=list(dict.fromkeys(table["model"])))
    auc.insert(0, "rows", table[table["model"] == table["model"].iloc[0]]["rows"].reindex(slices).to_numpy())
    auc.columns.name = None
    values = pd.DataFrame({"group": table["model"].to_numpy(), "category": table.index.astype(str),
                           "value": table["auc"].to_numpy(dtype=np.float64)})
    sizes = dict(zip(slices, auc["rows"]))
    return _write(out, title, [("Test AUC by slice", auc), ("All metrics", table)],
                  _slice_figure(values, slices, sizes, "model and sanity rows"))


def write_variants_report(rows: Sequence[dict], out: str | Path, *, title: str) -> dict[str, Path]:
    """Several variants over seeds (:func:`mdrec.workflows.transfer_variants.run_variant`'s rows) as the folder
    ``out``: the mean ± std table of :func:`summary` and the AUC by slice with
    a point per seed."""
    frame = pd.DataFrame(list(rows)).drop_duplicates(subset=["variant", "seed"])  # a sanity row once per seed
    slices = [s for s in SLICES if s in frame.columns]
    values = frame.melt(id_vars=["variant"], value_vars=slices, var_name="category", value_name="value")
    values = values.rename(columns={"variant": "group"})
    return _write(out, title, [("Test AUC by slice, mean ± std over seeds", summary(list(rows)))],
                  _slice_figure(values, slices, dict(rows[0]["rows"]), "variants (points: seeds)"))


def _write(out: str | Path, title: str, sections: list[tuple[str, pd.DataFrame]], figure: "Figure"
           ) -> dict[str, Path]:
    out = Path(out)
    paths = {name: out / name for name in REPORT_FILES}
    with report_folder(out, REPORT_FILES, WHAT) as tmp:
        figures = {"Test AUC by slice": figure_png(figure)}
        markdown = [f"# {title}", ""]
        body = [f"<h1>{html.escape(title)}</h1>"]
        for heading, table in sections:
            markdown += [f"## {heading}", "", table_to_markdown(table), ""]
            body += [f"<h2>{html.escape(heading)}</h2>", html_table(table)]
        markdown += ["## How to read this", ""] + [f"- {item}" for item in READING]
        markdown += ["", "Plot (test AUC by slice): report.html.", ""]
        body += html_figures(figures) + ["<h2>How to read this</h2>", *html_list(READING, css="legend")]
        atomic_write_text(tmp / "report.md", "\n".join(markdown))
        atomic_write_text(tmp / "report.html", html_page("mdrec transfer", body))
    return paths


def _slice_figure(values: pd.DataFrame, slices: list[str], sizes: dict[str, int], what: str) -> "Figure":
    """AUC (y) by slice (x, labelled with its rows), one colour per group of ``values``."""
    from matplotlib.figure import Figure

    labels = {s: f"{s}\n({int(sizes[s]):,} rows)" if s in sizes else s for s in slices}
    values = values.assign(category=values["category"].map(labels))
    figure = Figure(figsize=(max(7.0, 1.5 * len(slices) + 2.5), 4.4))
    ax = figure.subplots()
    draw_seed_spread(ax, values, categories=[labels[s] for s in slices],
                     groups=list(dict.fromkeys(values["group"])), ylabel="test AUC")
    ax.set_title(f"Test AUC by the user's history: {what}")
    return figure


def summary(rows: list[dict]) -> pd.DataFrame:
    """Variant x slice: "mean ± std" of the test AUC over seeds
    (:func:`mdrec.evaluation.tables.mean_std_table`; "-" where a slice has no AUC).

    rows: :func:`run_variant`'s; each variant run repeats the sanity rows, so a (variant, seed)
    counts once.
    """
    frame = pd.DataFrame(rows).drop_duplicates(subset=["variant", "seed"])
    columns = [s for s in SLICES if s in frame.columns]
    values = frame.rename(columns={"variant": "row"}).melt(id_vars=["row", "seed"], value_vars=columns,
                                                           var_name="column", value_name="value")
    table = mean_std_table(values, rows=list(dict.fromkeys(frame["variant"])), columns=columns)
    table.index.name = "variant"
    return table
