"""Steps the dataset adapters share: seeded random streams, the k-core filter, negative sampling."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def seeded_rng(seed: int, purpose: str) -> np.random.Generator:
    """The random stream of ``purpose`` under ``seed``."""
    # One stream per purpose, so e.g. changing the negative count leaves the split unchanged.
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode())])


def k_core(frame: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Drop rows until every user_id and item_id has at least ``k`` rows: (kept rows, the number of
    rounds that dropped some; dropping an item's rows can push a user below ``k``, hence rounds)."""
    rounds = 0
    while True:
        items = frame["item_id"].map(frame["item_id"].value_counts())
        users = frame["user_id"].map(frame["user_id"].value_counts())
        keep = ((items >= k) & (users >= k)).to_numpy()
        if keep.all():
            return frame, rounds
        frame = frame[keep]
        rounds += 1


def sample_negatives(users: np.ndarray, k: int, catalogue_size: int, known: np.ndarray,
                     rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """``k`` uniform negatives per row of ``users`` from items ``0 .. catalogue_size - 1``.

    ``known`` holds the sorted unique keys ``user * catalogue_size + item`` of every (user, item)
    the user interacted with; those are never drawn. Negatives of one row are distinct while the user
    has at least ``k`` unknown items. Vectorised rejection sampling redraws only the rejected slots;
    rows still rejected after ``max_rounds`` (users who know most of the catalogue) are drawn exactly
    from their remaining items. Slots that cannot be filled (a user who knows every item) hold -1.
    """
    users = np.asarray(users, dtype=np.int64)
    out = rng.integers(0, catalogue_size, size=(len(users), k), dtype=np.int64)
    known_per_user = _known_count(users, catalogue_size, known)
    available = catalogue_size - known_per_user
    distinct = available >= k

    def rejected(rows: np.ndarray) -> np.ndarray:
        draws = out[rows]
        keys = users[rows, None] * catalogue_size + draws
        pos = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))
        bad = (known[pos] == keys) if len(known) else np.zeros(keys.shape, dtype=bool)
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros_like(bad)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        duplicate = np.zeros_like(bad)
        np.put_along_axis(duplicate, order, repeat, axis=1)
        return bad | (duplicate & distinct[rows, None])

    rows = np.arange(len(users))
    for _ in range(max_rounds):
        if len(rows) == 0:
            break
        bad = rejected(rows)
        hit = bad.any(axis=1)
        rows, bad = rows[hit], bad[hit]
        if len(rows) == 0:
            break
        redraw = out[rows]
        redraw[bad] = rng.integers(0, catalogue_size, size=int(bad.sum()), dtype=np.int64)
        out[rows] = redraw
    if len(rows):
        bad = rejected(rows)
        for row, row_bad in zip(rows[bad.any(axis=1)], bad[bad.any(axis=1)]):
            user = users[row]
            lo, hi = np.searchsorted(known, [user * catalogue_size, (user + 1) * catalogue_size])
            pool = np.setdiff1d(np.arange(catalogue_size), known[lo:hi] - user * catalogue_size)
            if distinct[row]:
                pool = np.setdiff1d(pool, out[row][~row_bad])
            if len(pool) == 0:
                out[row][row_bad] = -1
                continue
            out[row, row_bad] = rng.choice(pool, size=int(row_bad.sum()), replace=len(pool) < row_bad.sum())
    return out


def _known_count(users: np.ndarray, catalogue_size: int, known: np.ndarray) -> np.ndarray:
    lo = np.searchsorted(known, users * catalogue_size)
    hi = np.searchsorted(known, (users + 1) * catalogue_size)
    return hi - lo
