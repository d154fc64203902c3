"""Trivial baselines: the sanity row of every comparison table.

``MeanBaseline`` scores an impression by the global click rate plus the user's and the item's
smoothed deviations from it (additive smoothing toward the global rate with ``alpha`` pseudo
impressions). On real logs it is hard to beat; a model that does not beat it is not done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd


@dataclass
class MeanBaseline:
    global_rate: float
    user_rates: pd.Series
    item_rates: pd.Series
    alpha: float

    @classmethod
    def fit(cls, users, items, labels, alpha: float = 20.0) -> "MeanBaseline":
        return cls.fit_chunks([(users, items, labels)], alpha)

    @classmethod
    def fit_chunks(cls, chunks: Iterable[tuple], alpha: float = 20.0) -> "MeanBaseline":
        """Fit from (users, items, labels) chunks; memory grows with distinct ids, not rows."""
        sums: dict[str, pd.DataFrame] = {}
        for users, items, labels in chunks:
            frame = pd.DataFrame({"u": np.asarray(users, dtype=object), "i": np.asarray(items, dtype=object),
                                  "y": np.asarray(labels, dtype=np.float64)})
            for key in ("u", "i"):
                part = frame.groupby(key)["y"].agg(["sum", "count"])
                sums[key] = part if key not in sums else pd.concat([sums[key], part]).groupby(level=0).sum()
        if not sums:
            raise ValueError("no rows to fit the baseline on")
        rate = float(sums["u"]["sum"].sum() / sums["u"]["count"].sum())

        def smoothed(key: str) -> pd.Series:
            return (sums[key]["sum"] + alpha * rate) / (sums[key]["count"] + alpha)

        return cls(rate, smoothed("u"), smoothed("i"), alpha)

    def predict(self, users, items) -> np.ndarray:
        """Probabilities [N]; unseen users or items contribute no deviation."""
        user = pd.Series(np.asarray(users, dtype=object)).map(self.user_rates).fillna(self.global_rate)
        item = pd.Series(np.asarray(items, dtype=object)).map(self.item_rates).fillna(self.global_rate)
        score = user.to_numpy() + item.to_numpy() - self.global_rate
        return np.clip(score, 1e-4, 1 - 1e-4)
