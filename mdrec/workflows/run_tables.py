"""A run's per-line tables: computed from scores, stored in metrics.json as records, read back,
and set beside the sanity rows (what ``mdrec train``, ``evaluate`` and ``compare`` print)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.evaluation.metrics import ctr_report
from mdrec.spec import Spec


def ctr_table(spec: Spec, log: Log, scores: np.ndarray) -> pd.DataFrame:
    """Per-line CTR metrics of ``scores`` (float [N], one per row of ``log``): one row per line and "ALL"."""
    frame = pd.DataFrame({"label": log.frame[LABEL].to_numpy(), "score": scores,
                          "domain": log.frame[DOMAIN].to_numpy(dtype=object),
                          "user": log.frame[spec.user_id.name].to_numpy(dtype=object)})
    return ctr_report(frame, label="label", score="score", domain="domain", user="user")


def table_records(table: pd.DataFrame) -> list[dict]:
    """A per-line table as JSON-ready records (what metrics.json stores)."""
    return table.reset_index().to_dict(orient="records")


def table_from_records(records: list[dict]) -> pd.DataFrame:
    """The inverse of :func:`table_records`: the per-line table, indexed by line."""
    return pd.DataFrame(records).set_index("domain")


def retrieval_rows(metrics: dict, split: str) -> dict[str, pd.DataFrame]:
    """A retrieval run's tables on ``split`` by row name: "model", popularity, then every fitted
    baseline (ItemKNN, EASE; runs trained before they existed have popularity only)."""
    from mdrec.training.retrieval import POPULARITY

    tables = {"model": table_from_records(metrics["tables"][split]),
              POPULARITY: table_from_records(metrics["baseline"]["tables"][split])}
    for name, baseline in metrics.get("baselines", {}).items():
        if split in baseline.get("tables", {}):
            tables[name] = table_from_records(baseline["tables"][split])
    return tables


def versus_baseline(metrics: dict, split: str) -> pd.DataFrame:
    """Model and sanity baselines side by side: AUC per domain, then overall AUC, GAUC, logloss."""
    rows = {}
    sources = [(metrics["model"], metrics["tables"][split]),
               ("baseline: " + metrics["baseline"]["name"], metrics["baseline"]["tables"][split])]
    sources += [(name, b["tables"][split]) for name, b in metrics.get("baselines", {}).items()
                if split in b.get("tables", {})]
    for label, records in sources:
        table = table_from_records(records)
        row = {f"auc[{d}]": table.loc[d, "auc"] for d in table.index if d != "ALL"}
        row.update({"auc": table.loc["ALL", "auc"], "gauc": table.loc["ALL", "gauc"],
                    "logloss": table.loc["ALL", "logloss"]})
        rows[label] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "model"
    return frame
