"""The first-order logistic model: the "wide" part of Wide & Deep over user, item and line.

    p(click) = σ(b + w_user + w_item + w_line)

fitted by L2-regularised logistic regression (scikit-learn, lbfgs) on one-hot ids; an id unseen in
training has weight 0. Unlike the user+item mean it fits the three effects jointly (a popular
item seen mostly by heavy clickers is not credited twice). The strength ``C`` (inverse L2) is
chosen on the validation split from :data:`STRENGTHS`.

When the click is cut from a graded column, ``fit(..., grades=, levels=)`` fits the same weights on
every grade threshold instead (the rows stacked once per threshold, "level >= k" as the label, one
learned cut per threshold, the click's the intercept; the other thresholds' rows weighted
``grade_weight``): the sanity row of a model trained on every grade (mdrec.layers.grades).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from mdrec.data.grades import GradeLevels

STRENGTHS = (0.1, 0.3, 1.0, 3.0, 10.0)


class FirstOrderLogistic:
    """One-hot user, item and line ids -> click probability."""

    def __init__(self, strength: float = 1.0, max_iter: int = 1000):
        if strength <= 0:
            raise ValueError(f"strength must be > 0, got {strength}")
        self.strength = float(strength)
        self.max_iter = int(max_iter)
        self.vocabularies: list[pd.Index] = []
        self.model = None
        self.converged = True

    def _design(self, columns: Sequence) -> sp.csr_matrix:
        blocks = []
        for values, vocabulary in zip(columns, self.vocabularies):
            code = vocabulary.get_indexer(np.asarray(values, dtype=object))
            seen = code >= 0
            blocks.append(sp.csr_matrix((np.ones(int(seen.sum())), (np.flatnonzero(seen), code[seen])),
                                        shape=(len(code), len(vocabulary))))
        return sp.hstack(blocks, format="csr")

    def fit(self, users, items, lines, labels, *, grades: np.ndarray | None = None,
            levels: GradeLevels | None = None, grade_weight: float = 0.5) -> "FirstOrderLogistic":
        """Fit on the clicks ``labels``, or with ``grades`` (the rows' graded column) and their
        ``levels`` on every grade threshold."""
        return self._solve(*self._problem((users, items, lines, labels), grades, levels, grade_weight))

    def _problem(self, train: tuple, grades: np.ndarray | None, levels: GradeLevels | None,
                 grade_weight: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
        """Learn the id vocabularies of ``train`` (users, items, lines, labels); its design, targets
        and sample weights."""
        columns = train[:3]
        self.vocabularies = [pd.Index(pd.unique(np.asarray(c, dtype=object))) for c in columns]
        design, targets, weights = self._design(columns), np.asarray(train[3]).astype(int), None
        if grades is not None and levels is not None:
            design, targets, weights = _every_threshold(design, levels.levels(grades), levels.click_level,
                                                        levels.num_levels, grade_weight)
        return design, targets, weights

    def _solve(self, design: sp.csr_matrix, targets: np.ndarray, weights: np.ndarray | None) -> "FirstOrderLogistic":
        """lbfgs on the problem, from zero weights."""
        from sklearn.linear_model import LogisticRegression

        # No warm start from a neighbouring strength: scikit-learn's loss is a mean, so on a large
        # log the gradient gap between two strengths falls under tol and lbfgs would not move.
        self.model = LogisticRegression(C=self.strength, max_iter=self.max_iter, tol=1e-5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self.model.fit(design, targets, sample_weight=weights)
        # A fit stopped at max_iter is still a fair sanity row; say so instead of warning on stderr.
        self.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return self

    def predict(self, users, items, lines) -> np.ndarray:
        """Probabilities float64 [N]."""
        if self.model is None:
            raise RuntimeError("call fit() first")
        design = self._design((users, items, lines))  # (a graded fit's threshold columns are 0 for the click)
        return expit(design @ self.model.coef_[0, :design.shape[1]] + self.model.intercept_[0])

    @classmethod
    def choose(cls, train: tuple, valid: tuple, strengths: Sequence[float] = STRENGTHS, **graded: Any
               ) -> tuple["FirstOrderLogistic", dict]:
        """Fit one model per strength on ``train`` (users, items, lines, labels); keep the one of
        best AUC on ``valid`` (same tuple). Returns it and each tried strength's validation AUC.
        ``graded``: :meth:`fit`'s grades, levels and grade_weight.

        The design is built once; the strengths are walked from the strongest regularisation up,
        and the walk stops once two strengths in a row score below the best (on every log measured,
        validation AUC along the path has a single peak).
        """
        from sklearn.metrics import roc_auc_score

        first = cls(min(strengths))
        problem = first._problem(train, graded.get("grades"), graded.get("levels"), graded.get("grade_weight", 0.5))
        best, worse, grid = None, 0, {}
        for strength in sorted(strengths):
            model = cls(strength)
            model.vocabularies = first.vocabularies
            model._solve(*problem)
            grid[float(strength)] = float(roc_auc_score(valid[3], model.predict(*valid[:3])))
            if best is None or grid[float(strength)] > grid[best.strength]:
                best, worse = model, 0
            else:
                worse += 1
                if worse == 2:
                    break
        assert best is not None
        return best, grid


def _every_threshold(design: sp.csr_matrix, levels: np.ndarray, click_level: int, num_levels: int,
                     weight: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The rows stacked once per threshold k = 1..K: the design plus a one-hot of k (none for the
    click's threshold, whose cut is the intercept), label level >= k, weight 1 for the click's rows
    and ``weight`` for the others'."""
    others = [k for k in range(1, num_levels + 1) if k != click_level]
    n = design.shape[0]
    blocks, targets, weights = [], [], []
    for k in [click_level, *others]:
        column = np.full(n, others.index(k)) if k != click_level else None
        indicator = sp.csr_matrix((np.ones(n), (np.arange(n), column)), shape=(n, len(others))) \
            if column is not None else sp.csr_matrix((n, len(others)))
        blocks.append(sp.hstack([design, indicator], format="csr"))
        targets.append((levels >= k).astype(int))
        weights.append(np.full(n, 1.0 if k == click_level else weight))
    return sp.vstack(blocks, format="csr"), np.concatenate(targets), np.concatenate(weights)
