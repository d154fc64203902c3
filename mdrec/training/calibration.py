"""Fit a CTR model's per-line calibration (mdrec.layers.calibration) on held-out rows.

For each line, a one-feature logistic regression of the labels on the model's current logits:
p = σ(a · z + b) (Platt, 1999). The new pair composes with whatever the layer held, so fitting
twice changes nothing. A line with fewer than :data:`MIN_ROWS` held-out rows or one class keeps its
pair, and the report says why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_ROWS = 200      # below this a line's (a, b) would follow noise
MAX_ITER = 1000


@dataclass
class LineFit:
    """One line's pair (the layer's after the fit), its held-out rows, and why it was kept if so."""

    scale: float
    shift: float
    rows: int
    kept: str | None = None

    def report(self) -> dict:
        out = {"scale": round(self.scale, 5), "shift": round(self.shift, 5), "rows": self.rows}
        return {**out, "kept": self.kept} if self.kept else out


def platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of σ(a · logit + b) maximising the likelihood of ``labels`` (unpenalised)."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=np.inf, max_iter=MAX_ITER, tol=1e-8)
    fit.fit(np.asarray(logits, dtype=np.float64)[:, None], np.asarray(labels).astype(int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 − p)), with p clipped away from 0 and 1 (float32 sigmoids saturate there)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def fit_line_calibration(layer, probabilities: np.ndarray, labels: np.ndarray, line_ids: np.ndarray,
                         line_names: list[str]) -> dict[str, LineFit]:
    """Refit ``layer`` (a LineCalibration) from the model's current probabilities [N] of held-out
    rows with their labels [N] and line indices [N]; returns each line's fit by name."""
    z, labels, line_ids = logits_of(probabilities), np.asarray(labels), np.asarray(line_ids)
    scale, shift = layer.scale.numpy().astype(np.float64), layer.shift.numpy().astype(np.float64)
    fits: dict[str, LineFit] = {}
    for d, name in enumerate(line_names):
        rows = line_ids == d
        kept = None
        if rows.sum() < MIN_ROWS:
            kept = f"{int(rows.sum())} held-out rows, fewer than {MIN_ROWS}"
        elif len(np.unique(labels[rows])) < 2:
            kept = "the held-out rows have one class"
        if kept is None:
            a, b = platt(z[rows], labels[rows])
            # The layer already maps raw r to z = s·r + t; the new fit maps z to a·z + b.
            scale[d], shift[d] = a * scale[d], a * shift[d] + b
        fits[name] = LineFit(float(scale[d]), float(shift[d]), int(rows.sum()), kept)
    layer.assign(scale, shift)
    return fits
