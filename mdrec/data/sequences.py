"""Behaviour sequences without leakage.

For each event, the history is the items of the same user's events with a time *strictly* before
the event's time (events at the same second are never each other's history), optionally only the
clicked ones, the most recent ``max_length`` of them, oldest first, padded with "" at the end.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, TIME, Log
from mdrec.data.transform import lookup_keys
from mdrec.spec import Spec


def build_history(users: np.ndarray, items: np.ndarray, times: np.ndarray, max_length: int,
                  include: np.ndarray | None = None) -> np.ndarray:
    """History matrix for a log.

    Args:
      users, items: [N] ids (any hashable values); times: [N] int64.
      include: [N] bool, which events may appear in others' histories (e.g. clicks only).
    Returns:
      [N, max_length] object array of item ids, oldest first, "" padding at the end.
    """
    n = len(users)
    include = np.ones(n, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    user_codes = pd.factorize(pd.Series(users, dtype=object))[0].astype(np.int64)
    times = np.asarray(times, dtype=np.int64)
    # One sort key per event: (user, time). Shifting times to start at 0 keeps the key in int64.
    t0 = times.min() if n else 0
    span = int(times.max() - t0 + 1) if n else 1
    if user_codes.max(initial=0) * span > np.iinfo(np.int64).max // 2:
        raise ValueError("time span too large for the history index")
    keys = user_codes * span + (times - t0)
    candidate = np.flatnonzero(include)
    # Ties (same user, same second) are ordered by item so the history never depends on row order.
    item_rank = pd.factorize(pd.Series(items, dtype=object).astype(str), sort=True)[0]
    order = candidate[np.lexsort((item_rank[candidate], keys[candidate]))]
    cand_keys = keys[order]
    cand_items = np.asarray(items, dtype=object)[order]
    # end: candidates of this user strictly before the event; start: this user's first candidate.
    end = np.searchsorted(cand_keys, keys, side="left")
    start = np.searchsorted(cand_keys, user_codes * span, side="left")
    length = np.minimum(end - start, max_length)
    first = end - length
    out = np.full((n, max_length), "", dtype=object)
    for offset in range(max_length):
        valid = offset < length
        out[valid, offset] = cand_items[first[valid] + offset]
    return out


def add_history(log: Log, spec: Spec) -> np.ndarray | None:
    """The spec's behaviour sequence for every row of ``log`` ([N, max_length] or None)."""
    if spec.sequence is None:
        return None
    seq = spec.sequence
    item_feature = spec.feature(seq.item)
    include = log.frame[LABEL].to_numpy() == 1 if seq.positives_only else None
    # History holds table keys ("domain/item" for scope: domain), so the model looks them up as-is.
    items = lookup_keys(log.frame[item_feature.name].to_numpy(dtype=object), item_feature,
                        log.frame[DOMAIN].to_numpy(dtype=object))
    return build_history(log.frame[spec.user_id.name].to_numpy(dtype=object), items,
                         log.frame[TIME].to_numpy(), seq.max_length, include)
