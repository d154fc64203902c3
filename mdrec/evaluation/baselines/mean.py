"""The user+item mean: the first sanity row of every CTR table.

``MeanBaseline`` scores an impression by the global click rate plus the user's and the item's
smoothed deviations from it; each rate is smoothed toward the global rate with ``alpha`` pseudo
impressions:

    rate(u) = (clicks(u) + alpha · g) / (impressions(u) + alpha),   score = rate(u) + rate(i) − g

On real logs it is hard to beat. How much to smooth depends on the log (few impressions per user
want more), so :meth:`MeanBaseline.choose_alpha` picks ``alpha`` on the validation split from
:data:`ALPHAS`, fitted once: the counts do not change with ``alpha``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

ALPHAS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


@dataclass
class MeanBaseline:
    """global_rate: g; user_counts / item_counts: DataFrames of "sum" (clicks) and "count"
    (impressions) indexed by id; alpha: the pseudo impressions of the smoothing."""

    global_rate: float
    user_counts: pd.DataFrame
    item_counts: pd.DataFrame
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
        return cls(rate, sums["u"], sums["i"], float(alpha))

    def _smoothed(self, counts: pd.DataFrame) -> pd.Series:
        return (counts["sum"] + self.alpha * self.global_rate) / (counts["count"] + self.alpha)

    @property
    def user_rates(self) -> pd.Series:
        return self._smoothed(self.user_counts)

    @property
    def item_rates(self) -> pd.Series:
        return self._smoothed(self.item_counts)

    def predict(self, users, items) -> np.ndarray:
        """Probabilities [N]; unseen users or items contribute no deviation."""
        user = pd.Series(np.asarray(users, dtype=object)).map(self.user_rates).fillna(self.global_rate)
        item = pd.Series(np.asarray(items, dtype=object)).map(self.item_rates).fillna(self.global_rate)
        score = user.to_numpy() + item.to_numpy() - self.global_rate
        return np.clip(score, 1e-4, 1 - 1e-4)

    def with_alpha(self, alpha: float) -> "MeanBaseline":
        return replace(self, alpha=float(alpha))

    def choose_alpha(self, users, items, labels, alphas: Sequence[float] = ALPHAS) -> tuple["MeanBaseline", dict]:
        """The baseline with the ``alpha`` of best validation AUC (ties: the first in ``alphas``),
        and every alpha's AUC. One class in ``labels``: unchanged, the grid reported empty."""
        from sklearn.metrics import roc_auc_score

        labels = np.asarray(labels)
        if len(np.unique(labels)) < 2:
            return self, {}
        grid = {float(a): float(roc_auc_score(labels, self.with_alpha(a).predict(users, items))) for a in alphas}
        best = max(grid, key=lambda a: (grid[a], -list(grid).index(a)))
        return self.with_alpha(best), grid
