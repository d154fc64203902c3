"""Grade levels: the column a click is cut from, as ordered levels the models can also learn from.

When the spec cuts the click from a graded column (``label: {column: rating, positive_if: ">= 4"}``),
the grade says more than the click: a 5 is a surer like than a 4, a 3 a nearer miss than a 1.
Fitted on the training split (:meth:`GradeLevels.fit`), the grades become levels 0..K, the number
of thresholds "grade >= t" a row passes (for a ``<`` / ``<=`` rule, "grade <= t"); the click is
"level >= click_level". A CTR model then learns one logit per threshold from the same score
(mdrec.layers.grades): every row teaches it the whole grade, not one bit of it. It only trains
on the levels; it predicts, exports and serves the click.

Levels exist for a threshold rule (``>=``, ``>``, ``<=``, ``<``, or ``==`` the top or bottom
training grade, e.g. ``== 5`` on a 1-5 rating) over at most ``MAX_GRADES``
distinct training values with at least two thresholds (a rating scale, not a watch time);
otherwise :meth:`GradeLevels.fit` says why not and the models train on the click alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mdrec.spec import Spec
from mdrec.spec.schema import RULE

MAX_GRADES = 10
_INCREASING = {">=": True, ">": True, "<=": False, "<": False}


@dataclass(frozen=True)
class GradeLevels:
    """column: the graded column's name; increasing: whether a higher grade is the better (a ``>`` or
    ``>=`` rule; else "passing" t means grade <= t); thresholds: K grades t_1..t_K in that
    direction (a row's level is how many it passes);
    click_level: the click is level >= click_level (1..K); shares: the training share of rows at
    level >= k, k = 1..K (where a model's threshold offsets start)."""

    column: str
    increasing: bool
    thresholds: tuple[float, ...]
    click_level: int
    shares: tuple[float, ...]

    @property
    def num_levels(self) -> int:
        """K, the number of thresholds (levels run 0..K)."""
        return len(self.thresholds)

    def levels(self, grades: np.ndarray) -> np.ndarray:
        """grades float [N] -> levels float32 [N] in 0..K (float: they travel as training labels)."""
        passed = _passes(np.asarray(grades, dtype=np.float64)[:, None], np.asarray(self.thresholds)[None, :],
                         self.increasing)
        return passed.sum(axis=1).astype(np.float32)

    def describe(self) -> str:
        """E.g. "rating >= 2, 3, 4, 5 (the click is >= 4)"."""
        sign = ">=" if self.increasing else "<="
        values = ", ".join(f"{t:g}" for t in self.thresholds)
        return f"{self.column} {sign} {values} (the click is {sign} {self.thresholds[self.click_level - 1]:g})"

    def to_dict(self) -> dict:
        return {"column": self.column, "increasing": self.increasing, "thresholds": list(self.thresholds),
                "click_level": self.click_level, "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, raw: Mapping) -> "GradeLevels":
        return cls(str(raw["column"]), bool(raw["increasing"]), tuple(float(t) for t in raw["thresholds"]),
                   int(raw["click_level"]), tuple(float(s) for s in raw["shares"]))

    @classmethod
    def fit(cls, counts: Mapping[float, int], spec: Spec) -> "GradeLevels | str":
        """The levels of the training grades (``counts``: grade -> training rows), or the reason
        there are none (a sentence)."""
        rule = spec.label.positive_if
        if rule is None:
            return "the label is a 0/1 column"
        match = RULE.match(rule)
        assert match is not None  # the spec parser checked the rule
        op, cut = match.group(1), float(match.group(2))
        if op == "==" and counts and cut in (max(counts), min(counts)):  # the top (bottom) grade: a threshold
            op = ">=" if cut == max(counts) else "<="
        if op not in _INCREASING:
            return f"the rule {rule!r} is not a threshold"
        if len(counts) > MAX_GRADES:
            return f"{spec.label.column} has more than {MAX_GRADES} distinct training values"
        increasing = _INCREASING[op]
        values = sorted(counts, reverse=not increasing)
        thresholds = values[1:]  # every row passes the lowest grade: no threshold there
        if len(thresholds) < 2:
            return f"{spec.label.column} has {len(values)} distinct training values: the click is all it says"
        clicks = [_passes(np.float64(v), np.float64(cut), increasing, strict=op in (">", "<")) for v in values]
        if not any(clicks) or all(clicks):
            return "every training row has the same label"
        rows = np.array([counts[v] for v in values], dtype=np.float64)
        return cls(spec.label.column, increasing, tuple(float(t) for t in thresholds),
                   click_level=int(np.argmax(clicks)),  # values[k], the first grade that is a click, is level k
                   shares=tuple(float(rows[k:].sum() / rows.sum()) for k in range(1, len(values))))


def _passes(value: np.ndarray, threshold: np.ndarray, increasing: bool, strict: bool = False) -> np.ndarray:
    if increasing:
        return value > threshold if strict else value >= threshold
    return value < threshold if strict else value <= threshold
