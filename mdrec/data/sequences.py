"""Behaviour sequences without leakage.

With a time column, the history of an event is the items of the same user's events with a time
*strictly* before the event's time (events at the same second are never each other's history),
optionally only the clicked ones, the most recent ``max_length`` of them, oldest first, padded
with "" at the end.

Without a time column there is no "before"; the history is then the user's *profile*: their
clicked items in the training split (the last ``max_length`` in file order), never the event's own
item. Validation and test events see all training clicks (no held-out click is ever history).
A training event sees only the clicks of the *other profile fold* (each (user, item) pair falls
in one of two folds by a fixed hash): a profile of "every click but this one" gives the target
away by its absence, and a two-tower model learns to retrieve the missing item instead of items
like the present ones (on Amazon cloth/sport it then falls below popularity).
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


def profile_fold(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Fold (0 or 1) of each (user, item) pair: a fixed hash, so it depends on neither row order
    nor seed, and a pair's rows (click or not, any split) share it. int8 [N]."""
    pairs = pd.Series(np.asarray(users, dtype=object)).astype(str) + "\x1f" + \
        pd.Series(np.asarray(items, dtype=object)).astype(str)
    return (pd.util.hash_array(pairs.to_numpy(dtype=object)) & 1).astype(np.int8)


def build_profile(source_users: np.ndarray, source_items: np.ndarray, users: np.ndarray, items: np.ndarray,
                  max_length: int, *, other_fold: bool = False) -> np.ndarray:
    """Profile matrix: per row, the row's user's items in the source (the last ``max_length``
    distinct ones in source order, oldest first), without the row's own item; "" padding.

    Args:
      source_users, source_items: [M] the events profiles are built from (e.g. training clicks).
      users, items: [N] the rows to build profiles for.
      other_fold: only source items of the other ``profile_fold`` than the row's (the rows are
        the source's own split: a profile must not reveal the row's item by leaving it out).
    Returns: [N, max_length] object array.
    """
    # Without folds, every source item sits in fold 0 and every row in fold 1, so each row reads them all.
    source_fold = profile_fold(source_users, source_items) if other_fold else np.zeros(len(source_users), np.int8)
    row_fold = profile_fold(users, items) if other_fold else np.ones(len(users), np.int8)
    by_user: dict = {}
    for user, item, fold in zip(source_users.tolist(), source_items.tolist(), source_fold.tolist()):
        seen = by_user.setdefault(user, {})
        seen.pop(item, None)  # a repeated item moves to its latest position
        seen[item] = fold
    out = np.full((len(users), max_length), "", dtype=object)
    empty: dict = {}
    for row, (user, own, fold) in enumerate(zip(np.asarray(users, dtype=object).tolist(),
                                                np.asarray(items, dtype=object).tolist(), row_fold.tolist())):
        profile = [item for item, f in by_user.get(user, empty).items() if item != own and f != fold][-max_length:]
        out[row, :len(profile)] = profile
    return out


def add_profile(source: Log, log: Log, spec: Spec, *, folds: bool = True) -> np.ndarray:
    """Time-free history of ``log``'s rows from ``source``'s (training) events (clicks only unless
    ``positives_only: false``); a log profiled from itself reads the other fold only, or with
    ``folds=False`` every other item of the user (leave-one-out: safe only for a model that cannot
    memorise the user's whole set, i.e. reads no user id)."""
    seq = spec.sequence
    include = source.frame[LABEL].to_numpy() == 1 if seq.positives_only else np.ones(len(source), bool)
    return build_profile(source.frame[spec.user_id.name].to_numpy(dtype=object)[include],
                         _history_keys(source, spec)[include],
                         log.frame[spec.user_id.name].to_numpy(dtype=object), _history_keys(log, spec),
                         seq.max_length, other_fold=folds and source is log)


def _history_keys(log: Log, spec: Spec) -> np.ndarray:
    # History holds table keys ("domain/item" for scope: domain), so the model looks them up as-is.
    item_feature = spec.feature(spec.sequence.item)
    return lookup_keys(log.frame[item_feature.name].to_numpy(dtype=object), item_feature,
                       log.frame[DOMAIN].to_numpy(dtype=object))


def add_history(log: Log, spec: Spec, *, folds: bool = True) -> np.ndarray | None:
    """The spec's behaviour sequence for every row of ``log`` ([N, max_length] or None); without a
    time column, the profile of each row from the log's own other events (see add_profile)."""
    if spec.sequence is None:
        return None
    if spec.time is None:
        return add_profile(log, log, spec, folds=folds)
    seq = spec.sequence
    include = log.frame[LABEL].to_numpy() == 1 if seq.positives_only else None
    return build_history(log.frame[spec.user_id.name].to_numpy(dtype=object), _history_keys(log, spec),
                         log.frame[TIME].to_numpy(), seq.max_length, include)


def split_histories(spec: Spec, logs: list[Log], train: int | None = 0, *, folds: bool = True) -> list[np.ndarray | None]:
    """Behaviour sequences for several splits.

    With time, computed over their union so that an event's history may use any earlier event
    (from any split) but never one at or after its own time. Without time (profiles), every split's
    history comes from the training split ``logs[train]`` alone (its own rows read the other
    profile fold, or with ``folds=False`` every item but their own); with ``train`` None, each log
    profiles itself.
    """
    if spec.sequence is None:
        return [None] * len(logs)
    if spec.time is None:
        return [add_profile(logs[train] if train is not None else log, log, spec, folds=folds) for log in logs]
    combined = Log.concat(logs)
    history = add_history(combined, spec)
    out, start = [], 0
    for log in logs:
        out.append(history[start:start + len(log)])
        start += len(log)
    return out
