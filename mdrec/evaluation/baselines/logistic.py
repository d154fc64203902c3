"""The first-order logistic model: the "wide" part of Wide & Deep over user, item and line.

    p(click) = σ(b + w_user + w_item + w_line)

fitted by L2-regularised logistic regression (scikit-learn, lbfgs) on one-hot ids; an id unseen in
training has weight 0. Unlike the user+item mean it fits the three effects jointly (a popular
item seen mostly by heavy clickers is not credited twice). The strength ``C`` (inverse L2) is
chosen on the validation split from :data:`STRENGTHS`.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

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

    def fit(self, users, items, lines, labels) -> "FirstOrderLogistic":
        from sklearn.linear_model import LogisticRegression

        columns = (users, items, lines)
        self.vocabularies = [pd.Index(pd.unique(np.asarray(c, dtype=object))) for c in columns]
        self.model = LogisticRegression(C=self.strength, max_iter=self.max_iter, tol=1e-5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self.model.fit(self._design(columns), np.asarray(labels).astype(int))
        # A fit stopped at max_iter is still a fair sanity row; say so instead of warning on stderr.
        self.converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return self

    def predict(self, users, items, lines) -> np.ndarray:
        """Probabilities float64 [N]."""
        if self.model is None:
            raise RuntimeError("call fit() first")
        return self.model.predict_proba(self._design((users, items, lines)))[:, 1]

    @classmethod
    def choose(cls, train: tuple, valid: tuple, strengths: Sequence[float] = STRENGTHS
               ) -> tuple["FirstOrderLogistic", dict]:
        """Fit one model per strength on ``train`` (users, items, lines, labels); keep the one of
        best AUC on ``valid`` (same tuple). Returns it and every strength's validation AUC."""
        from sklearn.metrics import roc_auc_score

        best, grid = None, {}
        for strength in strengths:
            model = cls(strength).fit(*train)
            grid[float(strength)] = float(roc_auc_score(valid[3], model.predict(*valid[:3])))
            if best is None or grid[float(strength)] > grid[best.strength]:
                best = model
        return best, grid
