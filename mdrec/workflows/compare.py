"""Several trained runs on one log, one row per model, with the sanity baselines as the last rows.

:func:`run_comparison` also keeps each run's reliability points per line (for the reliability
diagrams of ``mdrec compare --report``); :func:`compare_runs` is its table alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.data.log import load_log
from mdrec.errors import MdrecError
from mdrec.evaluation.plots import RELIABILITY_BINS, reliability_points
from mdrec.evaluation.tables import mean_std_table

BASELINE = "baseline"  # the ``model`` of the sanity rows


@dataclass
class Comparison:
    """What ``mdrec compare`` found.

    table: one row per run (named by its folder), then the sanity rows; see :func:`compare_runs`.
    reliability: long frame, one row per (run, line, score bin): run, model, line ("ALL" first, then
        each line), predicted (mean predicted CTR of the bin), observed (its observed CTR).
    data: the log compared on. files: the report's paths once written (``report=``).
    """

    table: pd.DataFrame
    reliability: pd.DataFrame
    data: str
    files: dict[str, str] = field(default_factory=dict)


def compare_runs(runs: Sequence[str | Path], data: str | Path) -> pd.DataFrame:
    """Rows: one per run (named by its folder), then the sanity baselines (user+item mean, first-order
    logistic) fitted on the first run's training log with the settings it chose on validation. Columns: auc, gauc (impression-weighted by user), logloss, then auc[d] and calib[d] (mean
    predicted / observed CTR) per domain, and the model type."""
    return run_comparison(runs, data).table


def run_comparison(runs: Sequence[str | Path], data: str | Path, *, report: str | Path | None = None,
                   bins: int = RELIABILITY_BINS) -> Comparison:
    """:func:`compare_runs`' table and each run's reliability points (``bins`` quantile bins of its
    scores, per line). With ``report``, that folder gets report.md, report.html (plots) and
    table.csv, written as a whole (:mod:`mdrec.workflows.compare_report`); a folder holding other
    files is refused before any run is evaluated."""
    from mdrec.training.run import RunDir
    from mdrec.workflows.evaluate import CtrEvaluation, ctr_baseline_tables, evaluate_run

    if not runs:
        raise MdrecError("give at least one run folder with --runs")
    if report is not None:
        from mdrec.evaluation.html_report import check_report_folder
        from mdrec.workflows.compare_report import REPORT_FILES, WHAT

        check_report_folder(report, REPORT_FILES, WHAT)
    rows: dict[str, dict] = {}
    curves = []
    cache: dict = {}  # runs of one spec share the validated log and its sequences
    for path in runs:
        result = evaluate_run(path, data, cache=cache)
        config, _ = RunDir(path).read_config()
        name = Path(path).name
        if name in rows:
            name = str(path)
        if not isinstance(result, CtrEvaluation):
            raise MdrecError("mdrec compare takes CTR runs; rank retrieval runs with `mdrec evaluate`",
                             path=str(path))
        rows[name] = {"model": config.model, **summary_row(result.table)}
        curves.append(reliability_table(result.predictions, bins).assign(run=name, model=config.model))
    first = RunDir(runs[0])
    config, _ = first.read_config()
    spec = first.load_spec()
    target = load_log(data, spec)
    baselines, _ = ctr_baseline_tables(first, config, spec, target, cache=cache)
    for name, table in baselines.items():
        rows[name] = {"model": BASELINE, **summary_row(table)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    reliability = pd.concat(curves, ignore_index=True)[["run", "model", "line", "predicted", "observed"]]
    comparison = Comparison(table, reliability, str(data))
    if report is not None:
        from mdrec.workflows.compare_report import write_compare_report

        comparison.files = {k: str(v) for k, v in write_compare_report(comparison, report).items()}
    return comparison


def reliability_table(predictions: pd.DataFrame, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """Reliability points of one scorer: rows (line, predicted, observed), "ALL" first, then each
    line in sorted order. ``predictions``: columns label (n,), score (n,), domain (n,)."""
    parts = [("ALL", predictions)]
    parts += [(str(line), part) for line, part in predictions.groupby("domain", sort=True)]
    frames = []
    for line, part in parts:
        predicted, observed = reliability_points(part["label"].to_numpy(), part["score"].to_numpy(), bins)
        frames.append(pd.DataFrame({"line": line, "predicted": predicted, "observed": observed}))
    return pd.concat(frames, ignore_index=True)


def summary_row(table: pd.DataFrame) -> dict:
    """auc, gauc, logloss overall, then auc[d] and calib[d] per line, of a per-line CTR table."""
    row = {"auc": table.loc["ALL", "auc"], "gauc": table.loc["ALL", "gauc"], "logloss": table.loc["ALL", "logloss"]}
    for domain in table.index:
        if domain != "ALL":
            row[f"auc[{domain}]"] = table.loc[domain, "auc"]
    for domain in table.index:
        if domain != "ALL":
            row[f"calib[{domain}]"] = table.loc[domain, "calibration"]
    return row


def model_groups(table: pd.DataFrame) -> pd.Series:
    """The group of each row of a compare table: its model type, but each sanity row on its own
    (the user+item mean and the logistic row are different scorers, not seeds of one)."""
    return pd.Series(np.where(table["model"] == BASELINE, table.index.astype(str), table["model"]),
                     index=table.index, name="model")


def aggregate_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over the runs of each model type (e.g. several seeds), as strings
    (:func:`mdrec.evaluation.tables.mean_std_table`: sample std, one run no spread, none "-").
    Rows "<model> (n=<runs>)" in the table's order; columns those of ``table`` but ``model``."""
    numeric = table.drop(columns=["model"]).astype(float)
    groups = model_groups(table)
    # long: one value per (model, column, run); a run is one seed of its model
    values = numeric.assign(row=groups.to_numpy(), seed=table.index.to_numpy()).melt(
        id_vars=["row", "seed"], var_name="column", value_name="value")
    frame = mean_std_table(values, rows=list(dict.fromkeys(groups)), columns=list(numeric.columns))
    runs = groups.value_counts(sort=False)
    frame.index = [f"{model} (n={runs[model]})" for model in frame.index]
    frame.index.name = "model"
    return frame
