"""What an adapter hands back (:class:`Prepared`) and the statistics ``prepare.json`` reports on it."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


@dataclass
class Prepared:
    """What an adapter hands back to :func:`mdrec.data.prepare.prepare`.

    log: every output row, columns as the dataset's feature spec expects.
    split: per log row, 0 = train, 1 = valid, 2 = test.
    positive: per log row, whether the row counts as a positive under the spec's label rule
        (used only for the label rates in the summary).
    label: the spec's label, e.g. ``{"column": "rating", "positive_if": ">= 4"}``.
    notes: adapter-specific summary entries (source files, dropped rows, split rule, steps, ...).
    """

    log: pd.DataFrame
    split: np.ndarray
    positive: np.ndarray
    label: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)


def statistics(log: pd.DataFrame, split: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """Rows, users, items, overlap, label rates and cold-start counts, overall and per domain."""
    domains = sorted(log["domain"].unique().tolist())
    positive = np.asarray(positive, dtype=bool)
    users = {d: set(log.loc[log["domain"] == d, "user_id"].unique()) for d in domains}
    stats: dict[str, Any] = {
        "domains": domains,
        "rows": {"log": len(log), **{s: int((split == c).sum()) for c, s in enumerate(SPLITS)}},
        "rows_per_split_domain": {},
        "users": {"all": int(log["user_id"].nunique()), "per_domain": {d: len(users[d]) for d in domains}},
        "items": {"all": int(log["item_id"].nunique()),
                  "per_domain": {d: int(log.loc[log["domain"] == d, "item_id"].nunique()) for d in domains}},
        "user_overlap": {f"{a}&{b}": len(users[a] & users[b]) for a, b in itertools.combinations(domains, 2)},
        "label_rate": {"all": _rate(positive), "per_domain": {}, "per_split_domain": {}},
        "cold_start": {},
    }
    for d in domains:
        stats["label_rate"]["per_domain"][d] = _rate(positive[(log["domain"] == d).to_numpy()])
    train = log[split == 0]
    train_users, train_items = set(train["user_id"]), set(train["item_id"])
    for code, name in enumerate(SPLITS):
        part = log[split == code]
        part_positive = positive[split == code]
        counts = part["domain"].value_counts()
        stats["rows_per_split_domain"][name] = {d: int(counts.get(d, 0)) for d in domains}
        stats["label_rate"]["per_split_domain"][name] = {
            d: _rate(part_positive[(part["domain"] == d).to_numpy()]) for d in domains}
        if code:
            # Rows whose user or item never appears in training: their ids only get the OOV embedding.
            stats["cold_start"][name] = {
                "rows_with_user_unseen_in_train": int((~part["user_id"].isin(train_users)).sum()),
                "rows_with_item_unseen_in_train": int((~part["item_id"].isin(train_items)).sum()),
            }
    return stats


def _rate(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None
