"""CTR metrics for multi-domain evaluation (numpy / pandas / scikit-learn only, no TensorFlow).

All metric functions take 1-D inputs of length ``n`` (lists, numpy arrays, pandas Series, or a
``(n, 1)`` column such as a Keras ``predict`` output). Labels are 0/1 (bool accepted).

Where a metric is undefined for the data (AUC of a one-class slice, calibration without positives,
anything on an empty slice) the result is ``float('nan')``; nothing raises for such a slice so a
per-domain report never dies on a small domain. The reason is visible in a count next to it
(``positives`` / ``rows`` in :func:`ctr_report`, ``groups_excluded`` in :class:`GroupAUC`).
Malformed input (length mismatch, labels other than 0/1, probabilities outside [0, 1], non-finite
scores) raises ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

__all__ = [
    "auc",
    "logloss",
    "calibration",
    "expected_calibration_error",
    "GroupAUC",
    "gauc",
    "ctr_report",
    "format_table",
    "table_to_markdown",
]

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------
def _as_1d(values: npt.ArrayLike, name: str, *, dtype: npt.DTypeLike | None = None) -> np.ndarray:
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


def _check_lengths(**arrays: np.ndarray) -> None:
    items = list(arrays.items())
    first_name, first = items[0]
    for name, arr in items[1:]:
        if len(arr) != len(first):
            raise ValueError(
                f"length mismatch: {first_name} has {len(first)} values but {name} has {len(arr)}"
            )


def _labels(labels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Labels as float64 ``(n,)`` holding only 0.0 / 1.0."""
    y = _as_1d(labels, "labels", dtype=np.float64)
    bad = ~((y == 0.0) | (y == 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be 0 or 1; found {float(y[i])!r} at position {i}")
    return y


def _scores(scores: npt.ArrayLike, name: str = "scores") -> npt.NDArray[np.float64]:
    """Finite real scores as float64 ``(n,)`` (float32 -> float64 is exact, so ties survive)."""
    s = _as_1d(scores, name, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; found {float(s[i])!r} at position {i}")
    return s


def _probabilities(probabilities: npt.ArrayLike, name: str = "probabilities") -> npt.NDArray[np.float64]:
    """Scores that must also lie in [0, 1] (a logit passed by mistake is caught here)."""
    p = _scores(probabilities, name)
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must lie in [0, 1]; found {float(p[i])!r} at position {i} "
            "(pass sigmoid outputs, not logits)"
        )
    return p


# --------------------------------------------------------------------------------------------
# scalar metrics
# --------------------------------------------------------------------------------------------
def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` (n,) against 0/1 ``labels`` (n,).

    Returns nan when fewer than two classes are present (sklearn would raise).
    """
    y = _labels(labels)
    s = _scores(scores)
    _check_lengths(labels=y, scores=s)
    n_pos = y.sum()
    if n_pos == 0 or n_pos == len(y):
        return NAN
    return float(roc_auc_score(y, s))


def logloss(labels: npt.ArrayLike, probabilities: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities (n,) are clipped to [eps, 1 - eps].

    Clipping keeps a single confident mistake from making the loss infinite. nan for empty input.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    y = _labels(labels)
    p = _probabilities(probabilities)
    _check_lengths(labels=y, probabilities=p)
    if len(y) == 0:
        return NAN
    p = np.clip(p, eps, 1.0 - eps)
    # labels=[0, 1] so a one-class slice is still scored instead of raising
    return float(log_loss(y, p, labels=[0, 1]))


def calibration(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean predicted CTR / observed CTR for ``probabilities`` (n,) and ``labels`` (n,).

    1.0 is calibrated, > 1 over-predicts. nan when there are no positives (observed CTR is 0).
    """
    y = _labels(labels)
    p = _probabilities(probabilities)
    _check_lengths(labels=y, probabilities=p)
    positives = y.sum()
    if positives == 0:
        return NAN
    return float(p.sum() / positives)  # = mean(p) / mean(y); the 1/n cancels


def expected_calibration_error(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins over [0, 1], weighted by the bin's share of rows.

    ``sum_b (n_b / n) * |mean(y_b) - mean(p_b)|``. Bin ``b`` is ``[b/bins, (b+1)/bins)``, the last
    bin also holds p == 1. Empty bins contribute nothing. nan for empty input.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bins = int(bins)
    y = _labels(labels)
    p = _probabilities(probabilities)
    _check_lengths(labels=y, probabilities=p)
    n = len(y)
    if n == 0:
        return NAN
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    # n_b/n * |sum_y/n_b - sum_p/n_b| == |sum_y - sum_p| / n, no division by empty bins needed
    return float(np.abs(sum_y - sum_p).sum() / n)


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


def _group_codes(groups: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Integer codes ``(n,)`` for arbitrary hashable group ids; missing ids are an error."""
    if isinstance(groups, (pd.Series, pd.Index)):
        arr = groups.array
    else:
        arr = _as_1d(groups, "groups")
    codes, _ = pd.factorize(arr)
    codes = np.asarray(codes)
    missing = codes < 0
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(f"groups must not contain missing values; found one at position {i}")
    return codes


def gauc(labels: npt.ArrayLike, scores: npt.ArrayLike, groups: npt.ArrayLike) -> GroupAUC:
    """Group (per-user) AUC as in STAR: ``sum_u n_u * AUC_u / sum_u n_u``.

    labels, scores, groups: shape (n,). Only groups holding both classes contribute; the rest are
    counted in ``groups_excluded``.

    Vectorised Mann-Whitney U: one lexsort by (group, score), average ranks for ties computed
    from tie-block boundaries, then per-group sums with ``np.bincount``. For a group with
    ``P`` positives, ``N`` negatives and positive-rank sum ``R``:
    ``AUC = (R - P(P+1)/2) / (P N)``, identical to ``roc_auc_score`` (ties count 1/2).
    O(n log n) overall, independent of the number of groups.
    """
    y = _labels(labels)
    s = _scores(scores)
    codes = _group_codes(groups)
    _check_lengths(labels=y, scores=s, groups=codes)
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


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
_INT_COLUMNS = ("rows", "positives", "gauc_users")


def _report_row(y: npt.NDArray[np.float64], p: npt.NDArray[np.float64],
                users: npt.NDArray[np.intp] | None) -> dict[str, float]:
    rows = len(y)
    positives = int(y.sum())
    row = {
        "rows": rows,
        "positives": positives,
        "ctr": positives / rows if rows else NAN,
        "pred_ctr": float(p.mean()) if rows else NAN,
        "calibration": calibration(y, p),
        "auc": auc(y, p),
    }
    if users is not None:
        g = gauc(y, p, users)
        row["gauc"] = g.value
        row["gauc_users"] = g.groups_used
    row["logloss"] = logloss(y, p)
    row["ece"] = expected_calibration_error(y, p)
    return row


def ctr_report(
    frame: pd.DataFrame,
    *,
    label: str,
    score: str,
    domain: str | None = None,
    user: str | None = None,
) -> pd.DataFrame:
    """Per-domain CTR metrics table.

    frame: one row per impression with columns ``label`` (0/1), ``score`` (probability in [0, 1]),
    optionally ``domain`` and ``user``.

    Returns a DataFrame indexed by ``domain`` (index name "domain"): one row per domain value in
    sorted order (a categorical column's own category order), then "ALL" over every row. Columns: rows, positives, ctr, pred_ctr, calibration,
    auc, [gauc, gauc_users if ``user`` is given], logloss, ece. ``gauc_users`` counts users with
    both classes; a domain with one class gets auc = nan, visible from ``positives``.
    """
    needed = [c for c in (label, score, domain, user) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"ctr_report: column(s) {missing} not in frame; available: {list(frame.columns)}"
        )
    # validate the whole frame once so errors name the global position, not a slice's
    y = _labels(frame[label])
    p = _probabilities(frame[score], f"column '{score}'")
    users = _group_codes(frame[user]) if user is not None else None

    rows, keys = [], []
    if domain is not None:
        dom = frame[domain]
        if dom.isna().any():
            i = int(np.flatnonzero(dom.isna().to_numpy())[0])
            raise ValueError(f"column '{domain}' has a missing value at position {i}")
        if (dom.astype(str) == "ALL").any():
            raise ValueError(f"column '{domain}' contains 'ALL', which is reserved for the total row")
        dom_codes, uniques = dom.factorize(sort=True)
        for code, key in enumerate(uniques):
            mask = dom_codes == code
            rows.append(_report_row(y[mask], p[mask], users[mask] if users is not None else None))
            keys.append(key.item() if isinstance(key, np.generic) else key)
    rows.append(_report_row(y, p, users))
    keys.append("ALL")

    table = pd.DataFrame(rows, index=pd.Index(keys, name="domain", dtype=object))
    for col in _INT_COLUMNS:
        if col in table.columns:
            table[col] = table[col].astype(np.int64)
    return table


# --------------------------------------------------------------------------------------------
# text rendering
# --------------------------------------------------------------------------------------------
def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cell: not a scalar missing marker
        return False


def _format_cell(value: object, floatfmt: str) -> str:
    if _is_missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value)


def _columns(table: pd.DataFrame, floatfmt: str) -> list[tuple[str, list[str], bool]]:
    """[(header, cells, right_align)] for the index followed by each column."""
    index_cells = [_format_cell(v, floatfmt) for v in table.index.tolist()]
    index_name = "" if table.index.name is None else str(table.index.name)
    cols = [(index_name, index_cells, False)]
    for j, name in enumerate(table.columns):
        series = table.iloc[:, j]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        cells = [_format_cell(v, floatfmt) for v in series.tolist()]
        cols.append((str(name), cells, numeric))
    return cols


def format_table(table: pd.DataFrame, *, floatfmt: str = ".4f") -> str:
    """Plain-text aligned table (index first) for terminals.

    Numeric columns are right-aligned, text left-aligned; integer columns print without decimals,
    floats with ``floatfmt``, missing values as "-". Columns are separated by two spaces and a
    dashed rule sits under the header.
    """
    cols = _columns(table, floatfmt)
    widths = [max([len(h)] + [len(c) for c in cells]) for h, cells, _ in cols]

    def line(parts: Sequence[str]) -> str:
        out = [
            (part.rjust(w) if right else part.ljust(w))
            for part, w, (_, _, right) in zip(parts, widths, cols)
        ]
        return "  ".join(out).rstrip()

    lines = [line([h for h, _, _ in cols]), "  ".join("-" * w for w in widths)]
    for i in range(len(table)):
        lines.append(line([cells[i] for _, cells, _ in cols]))
    return "\n".join(lines)


def table_to_markdown(table: pd.DataFrame, *, floatfmt: str = ".4f") -> str:
    """GitHub-flavoured markdown table with the same cell formatting as :func:`format_table`."""
    cols = _columns(table, floatfmt)

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    header = "| " + " | ".join(esc(h) for h, _, _ in cols) + " |"
    rule = "| " + " | ".join("---:" if right else ":---" for _, _, right in cols) + " |"
    lines = [header, rule]
    for i in range(len(table)):
        lines.append("| " + " | ".join(esc(cells[i]) for _, cells, _ in cols) + " |")
    return "\n".join(lines)
