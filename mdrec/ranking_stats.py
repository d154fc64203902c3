"""AUC and group AUC on numpy arrays: the one implementation of both in the package.

:mod:`mdrec.evaluation.metrics` re-exports :func:`auc`, :func:`gauc` and :class:`GroupAUC` as its
public metrics; :mod:`mdrec.data.synthetic` scores its true click probabilities with them. This
module sits in the bottom layer so that both can (``data`` may not import ``evaluation``).

Inputs are 1-D of length ``n`` (lists, numpy arrays, pandas Series, or a ``(n, 1)`` column such as
a Keras ``predict`` output). Labels are 0/1 (bool accepted).

A missing class gives ``float('nan')``, never an error: the AUC of a one-class or empty slice, and
a group with one class (left out of :func:`gauc`'s mean, counted in ``groups_excluded``). Ties
count 1/2 in both. Malformed input (length mismatch, labels other than 0/1, non-finite scores,
missing group ids) raises ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["NAN", "GroupAUC", "as_1d", "as_labels", "as_scores", "auc", "check_lengths", "gauc",
           "group_codes"]

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------
def as_1d(values: npt.ArrayLike, name: str, *, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """Return ``values`` as a 1-D numpy array of shape ``(n,)``; ``(n, 1)`` is flattened."""
    try:
        if isinstance(values, (pd.Series, pd.Index)):
            # na_value: nullable dtypes (Int64, Float64, boolean) become NaN, caught by callers
            arr: np.ndarray = values.to_numpy(dtype=dtype, na_value=np.nan) if dtype else values.to_numpy()
        else:
            arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # Keras predict() returns (n, 1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or a single column), got shape {arr.shape}")
    return arr


def check_lengths(**arrays: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first array whose length differs from the first one's."""
    items = list(arrays.items())
    first_name, first = items[0]
    for name, arr in items[1:]:
        if len(arr) != len(first):
            raise ValueError(
                f"length mismatch: {first_name} has {len(first)} values but {name} has {len(arr)}"
            )


def as_labels(labels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Labels as float64 ``(n,)`` holding only 0.0 / 1.0."""
    y = as_1d(labels, "labels", dtype=np.float64)
    bad = ~((y == 0.0) | (y == 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be 0 or 1; found {float(y[i])!r} at position {i}")
    return y


def as_scores(scores: npt.ArrayLike, name: str = "scores") -> npt.NDArray[np.float64]:
    """Finite real scores as float64 ``(n,)`` (float32 -> float64 is exact, so ties survive)."""
    s = as_1d(scores, name, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; found {float(s[i])!r} at position {i}")
    return s


def group_codes(groups: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Integer codes ``(n,)`` for arbitrary hashable group ids, numbered in order of first
    appearance; missing ids are an error."""
    if isinstance(groups, (pd.Series, pd.Index)):
        arr = groups.array
    else:
        arr = as_1d(groups, "groups")
    codes, _ = pd.factorize(arr)
    codes = np.asarray(codes)
    missing = codes < 0
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(f"groups must not contain missing values; found one at position {i}")
    return codes


# --------------------------------------------------------------------------------------------
# AUC
# --------------------------------------------------------------------------------------------
def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` (n,) against 0/1 ``labels`` (n,).

    Returns nan when fewer than two classes are present (sklearn would raise).
    """
    # Imported here: scikit-learn takes most of a second to import, and `import mdrec.data.synthetic`
    # (which imports this module) should not pay it until it scores something.
    from sklearn.metrics import roc_auc_score

    y = as_labels(labels)
    s = as_scores(scores)
    check_lengths(labels=y, scores=s)
    n_pos = y.sum()
    if n_pos == 0 or n_pos == len(y):
        return NAN
    return float(roc_auc_score(y, s))


# --------------------------------------------------------------------------------------------
# group AUC
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupAUC:
    """Result of :func:`gauc`.

    value: impression-weighted mean per-group AUC (nan if no group has both classes).
    groups_used: groups with both classes. groups_excluded: groups with a single class
    (their AUC is undefined). impressions_used: rows in the used groups (the weights' sum).
    """

    value: float
    groups_used: int
    groups_excluded: int
    impressions_used: int


def gauc(labels: npt.ArrayLike, scores: npt.ArrayLike, groups: npt.ArrayLike) -> GroupAUC:
    """Group (per-user) AUC as in STAR: ``sum_u n_u * AUC_u / sum_u n_u``.

    labels, scores, groups: shape (n,). Only groups holding both classes contribute; the rest are
    counted in ``groups_excluded``.

    Vectorised Mann-Whitney U: one lexsort by (group, score), average ranks for ties computed
    from tie-block boundaries, then per-group sums with ``np.bincount``. For a group with
    ``P`` positives, ``N`` negatives and positive-rank sum ``R``:
    ``AUC = (R - P(P+1)/2) / (P N)``, identical to ``roc_auc_score`` (ties count 1/2).
    O(n log n) overall, independent of the number of groups. The weighted mean adds the groups up
    in order of first appearance in ``groups``, so reordering rows can move the last bit.
    """
    y = as_labels(labels)
    s = as_scores(scores)
    codes = group_codes(groups)
    check_lengths(labels=y, scores=s, groups=codes)
    n = len(y)
    if n == 0:
        return GroupAUC(NAN, 0, 0, 0)

    order = np.lexsort((s, codes))  # last key is primary: group, then score ascending
    c = codes[order]
    sc = s[order]
    ys = y[order]

    pos = np.arange(n)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(c[1:], c[:-1], out=new_group[1:])
    # a tie block is a run of equal scores inside one group
    new_block = new_group.copy()
    new_block[1:] |= sc[1:] != sc[:-1]

    group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    block_start = pos[new_block]
    block_end = np.append(block_start[1:], n)  # exclusive
    block_id = np.cumsum(new_block) - 1
    # average of the 0-based sorted positions covered by the block
    block_mid = (block_start + block_end - 1) / 2.0
    rank = block_mid[block_id] - group_start + 1.0  # 1-based rank within the group

    n_groups = int(c[-1]) + 1  # factorize codes are 0..G-1
    size = np.bincount(c, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(c, weights=ys, minlength=n_groups)
    rank_pos = np.bincount(c, weights=rank * ys, minlength=n_groups)
    n_neg = size - n_pos

    valid = (n_pos > 0) & (n_neg > 0)
    groups_used = int(valid.sum())
    groups_excluded = n_groups - groups_used
    if groups_used == 0:
        return GroupAUC(NAN, 0, groups_excluded, 0)

    u = rank_pos[valid] - n_pos[valid] * (n_pos[valid] + 1.0) / 2.0
    group_auc = u / (n_pos[valid] * n_neg[valid])
    weights = size[valid]
    value = float((weights * group_auc).sum() / weights.sum())
    return GroupAUC(value, groups_used, groups_excluded, int(weights.sum()))
