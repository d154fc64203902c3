"""Fit a CTR model's per-line calibration (mdrec.layers.calibration) on held-out rows.

For each line, a one-feature logistic regression of the labels on the model's current logits:
p = σ(a · z + b) (Platt, 1999). The new pair composes with whatever the layer held, so fitting
twice changes nothing. A line with fewer than :data:`MIN_ROWS` held-out rows or one class keeps its
pair, and the report says why.

A layer with two user groups (users with a training row, and without) gets a pair per line and
group; a group with too few held-out rows takes its line's pair fitted on both groups together.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_ROWS = 200      # below this a line's (a, b) would follow noise
MAX_ITER = 1000


@dataclass
class LineFit:
    """One pair (the layer's after the fit), its held-out rows, and why they got no fit of their
    own if so: then the pair was kept, or (``pooled``) is the line's over both user groups."""

    scale: float
    shift: float
    rows: int
    kept: str | None = None
    pooled: bool = False

    def report(self) -> dict:
        out = {"scale": round(self.scale, 5), "shift": round(self.shift, 5), "rows": self.rows}
        out.update({"kept": self.kept} if self.kept else {})
        return {**out, "pooled": True} if self.pooled else out

    def note(self) -> str | None:
        """What happened to a pair without a fit of its own, or None."""
        if not self.kept:
            return None
        return f"{self.kept}: " + ("takes its line's pair over both user groups" if self.pooled else "left as it was")


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


NEW_USERS = ", new users"  # the suffix of a line's second group in the fits' names


def fit_line_calibration(layer, probabilities: np.ndarray, labels: np.ndarray, line_ids: np.ndarray,
                         line_names: list[str], user_groups: np.ndarray | None = None) -> dict[str, LineFit]:
    """Refit ``layer`` (a LineCalibration) from the model's current probabilities [N] of held-out
    rows with their labels [N], line indices [N] and, for a layer with two user groups, each row's
    group [N] (1: a user without a training row); returns each fit by name (the line's, and
    "LINE, new users" for the second group)."""
    z, labels, line_ids = logits_of(probabilities), np.asarray(labels), np.asarray(line_ids)
    groups = np.zeros(len(z), dtype=int) if user_groups is None else np.asarray(user_groups, dtype=int)
    scale, shift = layer.scale.numpy().astype(np.float64), layer.shift.numpy().astype(np.float64)
    fits: dict[str, LineFit] = {}
    for d, name in enumerate(line_names):
        line = line_ids == d
        pooled = _fit(z[line], labels[line])
        for g in range(layer.user_groups):
            rows = line & (groups == g) if layer.user_groups > 1 else line
            own = _fit(z[rows], labels[rows]) if layer.user_groups > 1 else pooled
            pair, kept = None, None
            if isinstance(own, tuple):
                pair = own
            elif isinstance(pooled, tuple):  # a thin group takes its line's pair over both groups
                pair, kept = pooled, own
            else:
                kept = own
            index = d + layer.num_lines * g
            if pair is not None:
                a, b = pair
                # The layer already maps raw r to z = s·r + t; the new fit maps z to a·z + b.
                scale[index], shift[index] = a * scale[index], a * shift[index] + b
            fits[name + (NEW_USERS if g else "")] = LineFit(float(scale[index]), float(shift[index]),
                                                            int(rows.sum()), kept, pooled=kept is not None and
                                                            pair is not None)
    layer.assign(scale, shift)
    return fits


def _fit(z: np.ndarray, labels: np.ndarray) -> tuple[float, float] | str:
    """The Platt pair of these rows, or why they cannot have one."""
    if len(z) < MIN_ROWS:
        return f"{len(z)} held-out rows, fewer than {MIN_ROWS}"
    if len(np.unique(labels)) < 2:
        return "the held-out rows have one class"
    return platt(z, labels)
