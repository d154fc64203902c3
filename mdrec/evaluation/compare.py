"""Several trained runs on one log, one row per model, with the sanity baselines as the last rows."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.data.log import load_log
from mdrec.errors import MdrecError


def compare_runs(runs: Sequence[str | Path], data: str | Path) -> pd.DataFrame:
    """Rows: one per run (named by its folder), then the sanity baselines (user+item mean, first-order
    logistic) fitted on the first run's training log with the settings it chose on validation. Columns: auc, gauc (impression-weighted by user), logloss, then auc[d] and calib[d] (mean
    predicted / observed CTR) per domain, and the model type."""
    from mdrec.training.run import RunDir
    from mdrec.training.workflow import ctr_baseline_tables, evaluate_run

    if not runs:
        raise MdrecError("give at least one run folder with --runs")
    rows: dict[str, dict] = {}
    cache: dict = {}  # runs of one spec share the validated log and its sequences
    for path in runs:
        result = evaluate_run(path, data, cache=cache)
        config, _ = RunDir(path).read_config()
        name = Path(path).name
        if name in rows:
            name = str(path)
        rows[name] = {"model": config.model, **summary_row(result["_table"])}
    first = RunDir(runs[0])
    config, _ = first.read_config()
    spec = first.load_spec()
    target = load_log(data, spec)
    baselines, _ = ctr_baseline_tables(first, config, spec, target, cache=cache)
    for name, table in baselines.items():
        rows[name] = {"model": "baseline", **summary_row(table)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    return table


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


def aggregate_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over the runs of each model type (e.g. several seeds), as strings."""
    numeric = table.drop(columns=["model"]).astype(float)
    out = {}
    for model, part in numeric.groupby(table["model"], sort=False):
        mean, std = part.mean(), part.std(ddof=1) if len(part) > 1 else part.mean() * np.nan
        out[f"{model} (n={len(part)})"] = {c: (f"{mean[c]:.4f}" if np.isnan(std[c]) else f"{mean[c]:.4f} ± {std[c]:.4f}")
                                          for c in numeric.columns}
    frame = pd.DataFrame(out).T
    frame.index.name = "model"
    return frame
