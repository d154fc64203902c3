"""Hashed ids for very large vocabularies, with the collisions they cost counted.

A categorical feature with ``hash_buckets: N`` in the spec keeps no vocabulary: its values are
hashed into N buckets inside the graph (``tf_keras.layers.Hashing``: FarmHash fingerprint64
modulo N, plus 1 so that row 0 stays the missing value's row, as with a vocabulary's mask token),
so its table has N + 1 rows whatever the number of distinct ids, and nothing of size "number of
ids" has to be built or shipped with the model. The price is collisions: two ids in one bucket
share a row. :class:`HashStats` counts them in one streaming pass over the training split:
distinct ids (by a 64-bit hash of each value, so memory is 8 bytes per distinct id, not a Python
string) minus distinct buckets occupied.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras


class HashedLookup(tf_keras.layers.Hashing):
    """String ids -> int64 rows in [0, buckets]: "" (missing) -> 0, anything else -> 1 + hash % buckets.

    Stands in for a ``StringLookup`` (same call, ``vocabulary_size()`` = the table's rows).
    """

    def __init__(self, buckets: int, **kwargs):
        kwargs.pop("num_bins", None)
        kwargs.pop("mask_value", None)
        super().__init__(num_bins=int(buckets) + 1, mask_value="", **kwargs)
        self.buckets = int(buckets)

    def vocabulary_size(self) -> int:
        return self.num_bins

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("num_bins", None)
        config.pop("mask_value", None)
        return {**config, "buckets": self.buckets}


def bucket_of(values: np.ndarray | Iterable[str], buckets: int) -> np.ndarray:
    """The table row of each id, int64, exactly as :class:`HashedLookup` computes it in the graph."""
    values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    if values.size == 0:
        return np.zeros(0, np.int64)
    rows = tf.strings.to_hash_bucket_fast(tf.constant(values.astype(str)), int(buckets)).numpy() + 1
    rows[values == ""] = 0
    return rows.astype(np.int64)


class HashStats:
    """Distinct ids and distinct occupied buckets of one hashed table, over streamed chunks.

    Memory: 8 bytes per distinct id (a sorted array of 64-bit value hashes; two distinct ids share
    a 64-bit hash with probability about n^2 / 2^65, 3e-6 at n = 10^7) plus one byte per bucket.
    """

    def __init__(self, buckets: int):
        self.buckets = int(buckets)
        self._ids = np.zeros(0, np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._occupied = np.zeros(self.buckets + 1, dtype=bool)
        self.values = 0

    def update(self, keys) -> None:
        """Add a chunk of (already keyed, non-empty) id strings; a dict's keys count as the ids."""
        if isinstance(keys, dict):
            keys = list(keys)
        keys = np.asarray(keys, dtype=object)
        keys = keys[keys != ""]
        if keys.size == 0:
            return
        self.values += int(keys.size)
        unique = pd.unique(keys)
        self._occupied[bucket_of(unique, self.buckets)] = True
        self._pending.append(np.unique(pd.util.hash_array(unique, categorize=False)))
        self._pending_size += len(self._pending[-1])
        if self._pending_size > max(len(self._ids), 1 << 20):
            self._merge()

    def _merge(self) -> None:
        if self._pending:
            self._ids = np.unique(np.concatenate([self._ids] + self._pending))
            self._pending, self._pending_size = [], 0

    @property
    def distinct_ids(self) -> int:
        self._merge()
        return int(len(self._ids))

    @property
    def distinct_buckets(self) -> int:
        return int(self._occupied[1:].sum())

    def summary(self) -> dict:
        """What transform.json and metrics.json record for the table."""
        ids, used = self.distinct_ids, self.distinct_buckets
        return {"buckets": self.buckets, "distinct_ids": ids, "distinct_buckets": used,
                "collisions": ids - used,
                "collision_rate": round((ids - used) / ids, 6) if ids else 0.0}


def expected_collisions(distinct_ids: int, buckets: int) -> float:
    """Collisions expected from a uniform hash: n - N (1 - (1 - 1/N)^n)."""
    n, m = float(distinct_ids), float(buckets)
    return n - m * (1.0 - np.exp(n * np.log1p(-1.0 / m)))
