"""Several trained runs on one log, one row per model, with the sanity baselines as the last rows.

:func:`run_comparison` also keeps each run's reliability points per line (for the reliability
diagrams of ``mdrec compare --report``); :func:`compare_runs` is its table alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from mdrec.data.log import load_log
from mdrec.errors import MdrecError
from mdrec.evaluation.plots import RELIABILITY_BINS
from mdrec.workflows.comparison import BASELINE, Comparison, reliability_table, summary_row


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
