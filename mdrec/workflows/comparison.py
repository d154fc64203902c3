"""What ``mdrec compare`` finds (:class:`Comparison`) and the tables made from it: one row per
run, its reliability points, the mean ± std over the runs of each model. The run
(:mod:`mdrec.workflows.compare`) and its report (:mod:`mdrec.workflows.compare_report`) both
read this module; it reads neither."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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
