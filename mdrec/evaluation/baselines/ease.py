"""EASE: a linear item-item model with a closed form (Steck, "Embarrassingly Shallow Autoencoders
for Sparse Data", WWW 2019).

    B = argmin ||X − X B||² + λ ||B||²  subject to diag(B) = 0
      = I − P · diag(1 / diag(P)),  P = (XᵀX + λI)⁻¹

and a user with clicks x [N] scores the items x B = x − (x P) / diag(P). The N x N inverse is the
cost. When there are fewer users U than items N, the same P comes from a U x U inverse (Woodbury):

    P = (I − Xᵀ (X Xᵀ + λI)⁻¹ X) / λ

so a catalogue of 40,000 items bought by 10,000 users costs a 10,000 x 10,000 solve. Beyond
``max_size`` on both sides the fit refuses with a clear error (:class:`TooLarge`).

An item nobody clicked in training has an empty column: its row and column of P are those of
I / λ, so B is zero there and it scores 0 for everyone. The solve therefore runs over the clicked
items only (exactly the same B), which matters for one line's model over a shared catalogue:
its Gram matrix is the line's items, not every line's.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

MAX_SIZE = 30_000  # the largest side of the solve: 30,000² float64 is 7.2 GB


class TooLarge(ValueError):
    """Both the catalogue and the user count exceed what the closed form can invert here."""


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite float64 [n, n] (overwritten) by its Cholesky
    factor (LAPACK potrf + potri: about half the work of solving against the identity)."""
    if matrix.shape[0] == 0:  # no user (a line without training clicks): LAPACK refuses n = 0
        return matrix.copy()
    factor, info = scipy.linalg.lapack.dpotrf(matrix, lower=True, overwrite_a=True)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"the regularised Gram matrix is not positive definite (LAPACK info {info})")
    lower = np.tril(inverse)
    return lower + np.tril(inverse, -1).T


class EASE:
    """The closed-form item-item regression over a binary user x item click matrix."""

    def __init__(self, l2: float = 500.0, max_size: int = MAX_SIZE):
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        self.l2 = float(l2)
        self.max_size = int(max_size)
        self.weights: np.ndarray | None = None          # primal: B float32 [A, A] over the clicked items
        self._dual: tuple | None = None                 # dual: (X csr, (X Xᵀ + λI)⁻¹, diag(P)) over them
        self.clicked: np.ndarray | None = None          # int [A]: the columns of the A items with a click
        self.items = 0                                  # N

    def fit(self, clicks: sp.csr_matrix) -> "EASE":
        """clicks: binary csr [U, N]."""
        x = sp.csr_matrix(clicks, dtype=np.float64)
        x.data[:] = 1.0
        self.items = x.shape[1]
        self.clicked = np.flatnonzero(x.getnnz(axis=0))
        x = x[:, self.clicked]
        users, items = x.shape
        if min(users, items) > self.max_size:
            raise TooLarge(f"EASE needs a {min(users, items):,} x {min(users, items):,} solve "
                           f"({items:,} items, {users:,} users); the limit is {self.max_size:,}")
        if items <= users:
            gram = (x.T @ x).toarray()
            gram[np.diag_indices(items)] += self.l2
            p = _spd_inverse(gram)
            b = -p / np.diag(p)[None, :]
            b[np.diag_indices(items)] = 0.0
            self.weights, self._dual = b.astype(np.float32), None
            return self
        gram = (x @ x.T).toarray()
        gram[np.diag_indices(users)] += self.l2
        inverse = _spd_inverse(gram)
        # diag(P)_j = (1 − x_jᵀ (X Xᵀ + λI)⁻¹ x_j) / λ, x_j the j-th column of X (in item blocks).
        xt = x.T.tocsr()
        diagonal = np.empty(items)
        for start in range(0, items, 4096):
            part = xt[start:start + 4096]
            diagonal[start:start + 4096] = np.asarray(part.multiply(part @ inverse).sum(1)).ravel()
        self._dual = (x, inverse, (1.0 - diagonal) / self.l2)
        self.weights = None
        return self

    def score(self, profiles: sp.csr_matrix) -> np.ndarray:
        """profiles: binary csr [q, N] -> scores float32 [q, N] (0 for items without a training click)."""
        if self.clicked is None:
            raise RuntimeError("call fit() first")
        q = sp.csr_matrix(profiles)[:, self.clicked]
        out = np.zeros((q.shape[0], self.items), np.float32)
        out[:, self.clicked] = self._score_clicked(q)
        return out

    def _score_clicked(self, q: sp.csr_matrix) -> np.ndarray:
        """q: csr [q, A] over the clicked items -> x B float [q, A]."""
        if self.weights is not None:
            return np.asarray(q @ self.weights)
        assert self._dual is not None
        x, inverse, diagonal = self._dual
        dense = q.toarray().astype(np.float64)
        # x P = (x − ((x Xᵀ) (X Xᵀ + λI)⁻¹) X) / λ; the sparse X multiplies from the left
        through_users = np.asarray((q @ x.T) @ inverse)                 # [q, U]
        xp = (dense - (x.T @ through_users.T).T) / self.l2
        return dense - xp / diagonal[None, :]

    def settings(self) -> dict:
        return {"l2": self.l2}
