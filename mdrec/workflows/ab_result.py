"""The outcome of an offline A/B (:func:`mdrec.workflows.ab.ab_test`) and its JSON summary."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.records import recorded_path


@dataclass
class ABResult:
    """The outcome of :func:`mdrec.workflows.ab.ab_test`.

    verdict: the printed table, one row per slice (rows, users, positives, the primary metric's
        A / B / delta / 95% CI / Holm p / MDE / verdict, and the other metrics' verdicts).
    metrics: one row per (slice, metric): control, treatment, delta, ci_low, ci_high, se, p,
        test, p_holm, mde, verdict.
    slices: one row per slice: rows, users, positives (queries for retrieval), gauc users used /
        excluded.
    ips: IPS / SNIPS click-rate estimates per policy with intervals (None without propensities).
    notes: what was skipped or assumed, in words (printed and written to the report).
    sides: how each side was read (kind, path, model).
    curves: labels and both sides' scores (CTR) for the report's plots; not in summary.json.
    """

    family: str
    verdict: pd.DataFrame
    metrics: pd.DataFrame
    slices: pd.DataFrame
    sides: dict[str, dict]
    settings: dict
    notes: list[str] = field(default_factory=list)
    ips: pd.DataFrame | None = None
    curves: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def summary(self, record: str | Path | None = None) -> dict:
        """Everything but the curves, JSON-ready (NaN -> null). With ``record`` (the file it is
        written to), its paths (the data, each side's) are absolute or relative to that file's
        folder, as :func:`mdrec.records.recorded_path` writes them."""
        settings, sides = dict(self.settings), {role: dict(side) for role, side in self.sides.items()}
        if record is not None:
            settings["data"] = recorded_path(settings["data"], record)
            for side in sides.values():
                if side["kind"] != "baseline":  # baseline:NAME is a name, not a path
                    side["path"] = recorded_path(side["path"], record)
        out = {"family": self.family, "settings": settings, "sides": sides, "notes": self.notes,
               "slices": _records(self.slices), "metrics": _records(self.metrics),
               "verdict": _records(self.verdict)}
        if self.ips is not None:
            out["ips"] = _records(self.ips)
        return out


def _records(table: pd.DataFrame) -> list[dict]:
    """A table's rows (its named index as a column) as JSON-ready dicts."""
    frame = table.reset_index() if table.index.name else table
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _json_value(value):
    """numpy integers -> int, floats -> float, NaN / inf -> None (JSON has no NaN)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value
