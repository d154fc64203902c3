"""Sequel kNN: carry a user to a new line through what follows what in every line's log.

A user the new line has never seen is known by their clicks elsewhere. Item-to-item co-occurrence
(cross-line ItemKNN) can carry them across only through the few users active in both lines; the
order of events carries more. In a feed, the item shown (or clicked) right after a click is what
the business thinks goes with it; every line's log holds such pairs, and an item of the big line
and an item of the new line that are followed by the same things are alike even when no user
clicked both.

1. ``transition_counts``: T[i, j] = how often item j was shown to a user whose latest earlier
   click was item i (every line, clicked or not; the catalogue's rows). Without event times the
   order is unknown, and T falls back to co-clicks: T[i, j] = users who clicked both i and j.
2. ``SequelKNN.fit``: item vectors from the truncated (randomised) SVD of log(1 + T + Tᵀ)
   (symmetrised: "i leads to j" and "j leads to i" both say the two belong together), U √Σ per
   item, L2-normalised; each item's shelf: its ``neighbours`` nearest items of the target line by
   cosine, 1/neighbours each.
3. ``SequelKNN.score``: a user's target-line scores are ``share`` x the mean shelf of the items they
   clicked (in any line) + (1 - ``share``) x the line's exposure prior (each item's share of the
   line's rows): with few clicks to go on, what the line shows most is the best guess.
"""
from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

SHELF_BLOCK = 4096  # anchor rows per block of the [N, N_target] similarity: bounds its memory


def transition_counts(users: np.ndarray, items: np.ndarray, clicked: np.ndarray, times: np.ndarray | None,
                      n_items: int) -> sp.csr_matrix:
    """float32 csr [n_items, n_items] of event pairs.

    users: [E] any hashable ids; items: int [E] catalogue rows (-1: not in the catalogue, skipped);
    clicked: bool [E]; times: [E] event times (None: unknown). With times, each event j (clicked
    or not) counts once under the same user's latest click i strictly earlier in (time, row)
    order; ties in time keep the rows' order. Without times, each pair of distinct items the same
    user clicked counts once per user, both ways.
    """
    users, items, clicked = np.asarray(users), np.asarray(items, np.int64), np.asarray(clicked, bool)
    codes = np.unique(users, return_inverse=True)[1].ravel()
    if times is None:
        keep = clicked & (items >= 0)
        pairs = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (codes[keep], items[keep])),
                              shape=(int(codes.max(initial=-1)) + 1, n_items))
        pairs.data[:] = 1  # a repeat click is the same pair
        counts = (pairs.T @ pairs).tocsr()
        counts.setdiag(0)
        counts.eliminate_zeros()
        return counts.astype(np.float32)
    order = np.lexsort((np.arange(len(items)), np.asarray(times), codes))
    codes, items, clicked = codes[order], items[order], clicked[order]
    position = np.arange(len(items))
    latest = np.maximum.accumulate(np.where(clicked, position, -1))   # the latest click up to each row
    before = np.r_[-1, latest[:-1]]                                     # ... strictly before it
    anchor = np.maximum(before, 0)
    keep = (before >= 0) & (codes[anchor] == codes) & (items >= 0) & (items[anchor] >= 0)
    return sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (items[anchor[keep]], items[keep])),
                         shape=(n_items, n_items))


class SequelKNN:
    """Item vectors from the factorised transitions, a shelf of target-line neighbours per item.

    ``neighbours`` may be lowered after :meth:`fit` (to try several shelf sizes on one
    factorisation), never raised above the count it was fitted with; :meth:`truncated` gives the
    same for the rank.
    """

    def __init__(self, rank: int = 128, neighbours: int = 20, share: float = 0.5, seed: int = 0):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        self.rank, self.neighbours, self.share, self.seed = int(rank), int(neighbours), float(share), int(seed)
        # float32 [N, r']: U √Σ, leading factor first (r' = rank, or fewer for a catalogue of rank or fewer items)
        self.factors: np.ndarray | None = None
        self.vectors: np.ndarray | None = None  # float32 [N, r'], unit rows (zero for an item never seen)
        self.nearest: np.ndarray | None = None  # int [N, k]: each item's nearest target columns, best first
        self.target: np.ndarray | None = None   # int [N_target]: the target line's catalogue rows

    def fit(self, transitions: sp.spmatrix, target: np.ndarray) -> "SequelKNN":
        """transitions: [N, N] counts (:func:`transition_counts`); target: the target line's
        catalogue rows, the columns ranked."""
        n = transitions.shape[0]
        if transitions.shape != (n, n):
            raise ValueError(f"transitions must be square, got {transitions.shape}")
        if transitions.nnz == 0:
            raise ValueError("the log has no transitions: no user has an event after a click")
        counts = sp.csr_matrix(transitions + transitions.T, dtype=np.float64)
        counts.data = np.log1p(counts.data)  # a few very frequent pairs should not own the factors
        # Randomised SVD (Halko et al.), as EMCDR's PureSVD: seconds where ARPACK takes minutes at
        # a rank of a few hundred, and seeded.
        factors, values, _ = randomized_svd(counts, n_components=min(self.rank, n - 1), random_state=self.seed)
        self.factors = (factors * np.sqrt(values)).astype(np.float32)
        self.target = np.asarray(target, np.int64)
        self._index()
        return self

    def truncated(self, rank: int) -> "SequelKNN":
        """A copy that keeps this fit's ``rank`` leading factors, to try several ranks on one
        factorisation (close to a fit at that rank: the randomised SVD's leading factors are its
        most accurate)."""
        if self.factors is None:
            raise RuntimeError("call fit() first")
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank must be in [1, {self.rank}] (the rank it was fitted with), got {rank}")
        out = copy.copy(self)
        out.rank = int(rank)
        out._index()
        return out

    def _index(self) -> None:
        """The unit item vectors of the leading ``rank`` factors and each item's nearest target items."""
        assert self.factors is not None
        vectors = self.factors[:, :self.rank]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        self.nearest = self._nearest(self.neighbours)

    def _nearest(self, take: int) -> np.ndarray:
        """int [N, take]: each item's most similar target columns by cosine, best first, never the
        item itself; -1 where there is none (an item without vector, a line of too few items)."""
        assert self.vectors is not None and self.target is not None
        n, width = len(self.vectors), len(self.target)
        take = min(take, width - 1)
        if take < 1:
            return np.full((n, 0), -1, np.int64)
        against = self.vectors[self.target].T
        column_of = np.full(n, -1)
        column_of[self.target] = np.arange(width)
        out = np.full((n, take), -1, np.int64)
        for start in range(0, n, SHELF_BLOCK):
            block = np.arange(start, min(start + SHELF_BLOCK, n))
            sims = self.vectors[block] @ against
            own = column_of[block] >= 0
            sims[np.flatnonzero(own), column_of[block][own]] = -np.inf
            best = np.argpartition(-sims, take - 1, axis=1)[:, :take]
            best = np.take_along_axis(best, np.argsort(-np.take_along_axis(sims, best, 1), axis=1, kind="stable"), 1)
            seen = np.abs(self.vectors[block]).sum(1) > 0
            out[block[seen]] = best[seen]
        return out

    def shelf(self) -> sp.csr_matrix:
        """float32 csr [N, N_target]: each item's ``neighbours`` nearest target items, 1/neighbours each."""
        if self.nearest is None or self.target is None:
            raise RuntimeError("call fit() first")
        if self.neighbours > self.nearest.shape[1] and self.nearest.shape[1] < len(self.target) - 1:
            raise ValueError(f"neighbours {self.neighbours} is above the {self.nearest.shape[1]} it was fitted with")
        nearest = self.nearest[:, :self.neighbours]
        rows, cols = np.nonzero(nearest >= 0)
        weight = 1.0 / max(nearest.shape[1], 1)
        return sp.csr_matrix((np.full(len(rows), weight, np.float32), (rows, nearest[rows, cols])),
                             shape=(len(nearest), len(self.target)))

    def score(self, clicks: sp.spmatrix, prior: np.ndarray) -> np.ndarray:
        """float32 [q, N_target]: users' scores from their clicks (binary [q, N], any line) and the
        line's exposure prior [N_target] (sums to 1; a user without clicks gets the prior alone)."""
        shelf = self.shelf()
        clicks = sp.csr_matrix(clicks, dtype=np.float32)
        count = clicks.getnnz(axis=1).astype(np.float32)
        mean_shelf = np.asarray((sp.diags(1.0 / np.maximum(count, 1.0)) @ clicks @ shelf).todense())
        share = np.where(count > 0, self.share, 0.0)[:, None]
        scores: np.ndarray = share * mean_shelf + (1.0 - share) * np.asarray(prior, np.float32)[None, :]
        return scores.astype(np.float32)

    def settings(self) -> dict[str, float]:
        return {"rank": self.rank, "neighbours": self.neighbours, "share": self.share}
