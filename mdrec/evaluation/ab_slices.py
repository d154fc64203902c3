"""The slices of an offline A/B: row masks of user segments and of feature columns.

Each function returns {slice name: bool mask (n,)} over a log's rows; the comparison
(:mod:`mdrec.evaluation.ab_statistics`) reports every metric on every slice.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, TIME, Log
from mdrec.errors import MdrecError
from mdrec.spec import Spec

HISTORY_BUCKETS = ((0, 0, "0"), (1, 4, "1-4"), (5, 19, "5-19"), (20, None, "20+"))
_TOP_VALUES = 10  # --slice on a many-valued column: the most frequent values, the rest as "other"


def _events(log: Log, spec: Spec) -> pd.DataFrame:
    """user, domain, click (and time) of a log's rows, for segments."""
    out = pd.DataFrame({"user": log.frame[spec.user_id.name].to_numpy(dtype=object),
                        "domain": log.frame[DOMAIN].to_numpy(dtype=object),
                        "click": log.frame[LABEL].to_numpy().astype(np.int64)})
    if TIME in log.frame:
        out["time"] = log.frame[TIME].to_numpy()
    return out


def user_segments(log: Log, spec: Spec, known: Log | None, past: Log | None,
                  notes: list[str]) -> dict[str, np.ndarray]:
    """Row masks (n,) of the user segments of ``log``.

    * user=returning / user=new: the user has / has no row in ``known`` (the run's training file,
      or --history); skipped without one.
    * lines=several / lines=one: the user has rows in several business lines / one, over ``past``
      and ``log`` together; skipped when the spec has no domain column.
    * prior_clicks=0 / 1-4 / 5-19 / 20+: the user's clicks before the event: with a time column,
      clicks strictly earlier in ``past`` and ``log``; without one, all clicks in ``past``.
      Skipped with neither a history nor a time column.
    """
    events = _events(log, spec)
    history = _events(past, spec) if past is not None else None
    out: dict[str, np.ndarray] = {}
    if known is not None:
        returning = np.isin(events["user"].to_numpy(), _events(known, spec)["user"].unique())
        out["user=returning"], out["user=new"] = returning, ~returning
    else:
        notes.append("segment new vs returning users skipped: no history (give a run folder as a side, "
                     "or --history LOG)")
    if spec.domain.column:
        both = pd.concat([events[["user", "domain"]]] + ([history[["user", "domain"]]] if history is not None else []))
        lines = both.groupby("user")["domain"].nunique()
        several = events["user"].map(lines).to_numpy() > 1
        out["lines=several"], out["lines=one"] = several, ~several
    prior = None
    if "time" in events:
        prior = _prior_clicks(events, history)
        if history is None:
            notes.append("prior clicks counted within the evaluated log only (no history file)")
    elif history is not None:
        prior = events["user"].map(history.groupby("user")["click"].sum()).fillna(0).to_numpy()
        notes.append("prior clicks: all of the user's clicks in the history (the spec has no time column)")
    else:
        notes.append("segment by history length skipped: the spec has no time column and there is no history")
    if prior is not None:
        for low, high, name in HISTORY_BUCKETS:
            out[f"prior_clicks={name}"] = (prior >= low) & ((prior <= high) if high is not None else True)
    return out


def _prior_clicks(events: pd.DataFrame, past: pd.DataFrame | None) -> np.ndarray:
    """Clicks of the same user strictly before each event's time, over ``past`` and ``events``."""
    frames = [events.assign(row=np.arange(len(events)))]
    if past is not None and "time" in past:
        frames.append(past[["user", "domain", "click", "time"]].assign(row=-1))
    both = pd.concat(frames, ignore_index=True).sort_values(["user", "time"], kind="stable")
    before = both.groupby("user", sort=False)["click"].cumsum() - both["click"]
    # events at the same second never count each other: take the count at the first of them
    both["prior"] = before.groupby([both["user"], both["time"]], sort=False).transform("min")
    mine = both[both["row"] >= 0].sort_values("row")
    return mine["prior"].to_numpy()


def column_slices(log: Log, spec: Spec, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Row masks for ``--slice`` columns (a spec feature, by name or column).

    Categorical / text values: one slice per value, the ``_TOP_VALUES`` most frequent, the rest as
    "other"; numeric: quartile ranges; an unknown column or a vector feature is an error.
    """
    out: dict[str, np.ndarray] = {}
    by_name = {f.name: f for f in spec.features} | {f.column: f for f in spec.features}
    for column in columns:
        if column == spec.domain.column:
            continue  # every domain is a slice already
        if column not in by_name:
            known = sorted({f.column for f in spec.features if f.type != "dense_vector"})
            raise MdrecError(f"--slice column '{column}' is not a feature of spec '{spec.name}'",
                             hint=f"slice by one of its columns: {', '.join(known)}")
        feature = by_name[column]
        if feature.type == "dense_vector":
            raise MdrecError(f"--slice column '{column}' is a vector feature and has no values to slice by",
                             hint="slice by a categorical or numeric column")
        values = log.frame[feature.name]
        if feature.type == "numeric":
            buckets = pd.qcut(values, 4, duplicates="drop")
            order = [str(c) for c in buckets.cat.categories] + ["(missing)"]   # low to high
            labels = buckets.astype(str).where(values.notna(), "(missing)")
        else:
            labels = values.astype(str).where(values.astype(str) != "", "(missing)")
            top = labels.value_counts().index[:_TOP_VALUES]
            labels = labels.where(labels.isin(top), "other")
            order = sorted(set(top)) + ["other"]
        for value in order:
            mask = (labels == value).to_numpy()
            if mask.any():
                out[f"{column}={value}"] = mask
    return out
