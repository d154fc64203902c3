"""Plot pieces the reports share: reliability diagrams and a metric's spread over seeds.

matplotlib's object API only (``matplotlib.figure.Figure``, no pyplot): no global figure state and
no GUI backend, so reports can be drawn from threads, servers and tests alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Curve:
    """One reliability curve: mean predicted CTR (k,) against observed CTR (k,) per score bin."""

    label: str
    predicted: np.ndarray
    observed: np.ndarray
    color: str | None = None
    legend: bool = True  # False: drawn but not named again (another seed of a model already named)


def reliability_points(labels: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted (k,), observed CTR (k,)) over ``bins`` quantile bins of ``probabilities`` (n,).

    Quantile bins because click probabilities crowd near 0: equal-width bins would be mostly empty.
    Bins that collapse (ties) are dropped, so k <= ``bins``; empty input gives two empty arrays.
    """
    from sklearn.calibration import calibration_curve

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(y) == 0:
        return np.empty(0), np.empty(0)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    return predicted, observed


def draw_reliability(ax: "Axes", curves: Sequence[Curve], title: str) -> None:
    """Reliability diagram on ``ax``: every curve, the diagonal (perfect calibration), equal axes."""
    top = 0.0
    for curve in curves:
        if len(curve.predicted):
            ax.plot(curve.predicted, curve.observed, marker="o", ms=3, color=curve.color,
                    label=curve.label if curve.legend else "_nolegend_")
            top = max(top, float(np.max(curve.predicted)), float(np.max(curve.observed)))
    top = top * 1.05 or 1.0
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="mean predicted CTR (decile of scores)", ylabel="observed CTR", title=title,
           xlim=(0, top), ylim=(0, top))
    if any(c.legend and len(c.predicted) for c in curves):
        ax.legend(loc="upper left", fontsize=8)


def draw_seed_spread(ax: "Axes", values: pd.DataFrame, *, categories: Sequence[str], groups: Sequence[str],
                     ylabel: str) -> None:
    """A metric per category (x) and group (colour): a point per seed, the mean with ±1 std bars.

    ``values``: long frame with columns ``group``, ``category``, ``value`` (one row per seed; missing
    values skipped). Groups sit side by side within a category so their seeds do not overlap.
    """
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(categories), dtype=np.float64)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for i, (group, color) in enumerate(zip(groups, colors)):
        offset = (i - (len(groups) - 1) / 2) * width
        part = values[values["group"] == group].dropna(subset=["value"])
        named = False
        for j, category in enumerate(categories):
            seeds = part.loc[part["category"] == category, "value"].to_numpy(dtype=np.float64)
            if not len(seeds):
                continue
            ax.scatter(np.full(len(seeds), x[j] + offset), seeds, s=12, color=color, alpha=0.5, lw=0)
            std = float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0
            ax.errorbar(x[j] + offset, float(seeds.mean()), yerr=std, fmt="_" if len(seeds) > 1 else "o",
                        ms=12 if len(seeds) > 1 else 5, color=color, capsize=3,
                        label="_nolegend_" if named else f"{group} (n={len(seeds)})" if len(seeds) > 1 else group)
            named = True
    ax.set_xticks(x, list(categories), rotation=20 if max(map(len, categories), default=0) > 8 else 0)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", lw=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the axes: never over a point
