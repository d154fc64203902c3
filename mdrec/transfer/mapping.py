"""EMCDR: carry a user to a new line by mapping their latent factors from the line that knows them.

Man et al., "Cross-Domain Recommendation: An Embedding and Mapping Approach" (IJCAI 2017):

1. factorise each line's clicks on its own; here PureSVD (Cremonesi et al., RecSys 2010), the
   truncated SVD of the binary user x item matrix X ≈ U Σ Vᵀ, with item factors V [N, r] and a
   user's factor p = x V (so a known user scores x V Vᵀ);
2. on the bridge users (clicks in both lines) learn f with f(p_source) ≈ p_target, linear (ridge)
   or a one-hidden-layer tanh MLP, the paper's two mapping functions;
3. a user the target line has never seen scores the target items by f(p_source) V_targetᵀ.

Users with target clicks keep their own target factor, so the method is PureSVD on warm users.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

MAPPINGS = ("linear", "mlp")


class EMCDR:
    """PureSVD per line and a learned map from source-line to target-line user factors."""

    def __init__(self, rank: int = 64, mapping: str = "mlp", l2: float = 1.0, seed: int = 0):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
        self.rank, self.mapping, self.l2, self.seed = int(rank), mapping, float(l2), int(seed)
        self.source_items: np.ndarray | None = None  # V_source [N_source, r]
        self.target_items: np.ndarray | None = None  # V_target [N_target, r]
        self.map = None

    def fit(self, source: sp.csr_matrix, target: sp.csr_matrix) -> "EMCDR":
        """source, target: binary csr [users, N_source] and [users, N_target], rows the same users."""
        if source.shape[0] != target.shape[0]:
            raise ValueError(f"source and target need the same user rows, got {source.shape[0]} and {target.shape[0]}")
        self.source_items = _item_factors(source, self.rank, self.seed)
        self.target_items = _item_factors(target, self.rank, self.seed)
        bridge = (source.getnnz(1) > 0) & (target.getnnz(1) > 0)
        if bridge.sum() < 2:
            raise ValueError("fewer than 2 users have clicks in both lines: nothing to learn a mapping from")
        inputs = np.asarray(source[bridge] @ self.source_items)
        outputs = np.asarray(target[bridge] @ self.target_items)
        if self.mapping == "linear":
            from sklearn.linear_model import Ridge

            self.map = Ridge(alpha=self.l2).fit(inputs, outputs)
        else:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.neural_network import MLPRegressor

            with warnings.catch_warnings():
                # Early stopping on its own held-out tenth ends the fit; hitting max_iter first is
                # not an error worth a warning per fit.
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.map = MLPRegressor(hidden_layer_sizes=(2 * self.rank,), activation="tanh", alpha=self.l2 * 1e-3,
                                        max_iter=300, early_stopping=True,
                                        random_state=self.seed).fit(inputs, outputs)
        return self

    def user_factors(self, source: sp.csr_matrix, target: sp.csr_matrix) -> np.ndarray:
        """float [q, r]: each user's target factor, mapped from the source one where the target row is empty."""
        if self.map is None or self.source_items is None or self.target_items is None:
            raise RuntimeError("call fit() first")
        factors = np.asarray(target @ self.target_items, dtype=np.float64)
        cold = target.getnnz(1) == 0
        if cold.any():
            factors[cold] = self.map.predict(np.asarray(source[cold] @ self.source_items)).reshape(int(cold.sum()), -1)
        return factors

    def score(self, source: sp.csr_matrix, target: sp.csr_matrix) -> np.ndarray:
        """Scores float32 [q, N_target] of the users whose clicks are ``source`` [q, N_source] and ``target``."""
        return (self.user_factors(source, target) @ self.target_items.T).astype(np.float32)

    def settings(self) -> dict:
        return {"rank": self.rank, "mapping": self.mapping, "l2": self.l2}


def _item_factors(clicks: sp.csr_matrix, rank: int, seed: int) -> np.ndarray:
    """V [N, r] of the truncated SVD of ``clicks`` (r capped by the matrix's smaller side)."""
    from sklearn.utils.extmath import randomized_svd

    x = sp.csr_matrix(clicks, dtype=np.float64)
    x.data[:] = 1.0
    r = max(1, min(rank, min(x.shape) - 1))
    _, _, vt = randomized_svd(x, n_components=r, random_state=seed)
    return vt.T
