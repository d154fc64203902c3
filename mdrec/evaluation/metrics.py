"""CTR metrics for multi-domain evaluation (numpy / pandas / scikit-learn only, no TensorFlow).

All metric functions take 1-D inputs of length ``n`` (lists, numpy arrays, pandas Series, or a
``(n, 1)`` column such as a Keras ``predict`` output). Labels are 0/1 (bool accepted).

Where a metric is undefined for the data (AUC of a one-class slice, calibration without positives,
anything on an empty slice) the result is ``float('nan')``; nothing raises for such a slice so a
per-domain report never dies on a small domain. The reason is visible in a count next to it
(``positives`` / ``rows`` in :func:`ctr_report`, ``groups_excluded`` in :class:`GroupAUC`).
Malformed input (length mismatch, labels other than 0/1, probabilities outside [0, 1], non-finite
scores) raises ``ValueError``.

:func:`auc`, :func:`gauc` and :class:`GroupAUC` live in :mod:`mdrec.ranking_stats` (below the data
layer, so the synthetic generator scores its ceiling with the same code) and are re-exported here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import log_loss

from mdrec.ranking_stats import NAN, GroupAUC, as_labels, as_scores, auc, check_lengths, gauc, group_codes

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


# --------------------------------------------------------------------------------------------
# input validation (labels, scores and groups: mdrec.ranking_stats)
# --------------------------------------------------------------------------------------------
def _probabilities(probabilities: npt.ArrayLike, name: str = "probabilities") -> npt.NDArray[np.float64]:
    """Scores that must also lie in [0, 1] (a logit passed by mistake is caught here)."""
    p = as_scores(probabilities, name)
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
def logloss(labels: npt.ArrayLike, probabilities: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities (n,) are clipped to [eps, 1 - eps].

    Clipping keeps a single confident mistake from making the loss infinite. nan for empty input.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    y = as_labels(labels)
    p = _probabilities(probabilities)
    check_lengths(labels=y, probabilities=p)
    if len(y) == 0:
        return NAN
    p = np.clip(p, eps, 1.0 - eps)
    # labels=[0, 1] so a one-class slice is still scored instead of raising
    return float(log_loss(y, p, labels=[0, 1]))


def calibration(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean predicted CTR / observed CTR for ``probabilities`` (n,) and ``labels`` (n,).

    1.0 is calibrated, > 1 over-predicts. nan when there are no positives (observed CTR is 0).
    """
    y = as_labels(labels)
    p = _probabilities(probabilities)
    check_lengths(labels=y, probabilities=p)
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
    y = as_labels(labels)
    p = _probabilities(probabilities)
    check_lengths(labels=y, probabilities=p)
    n = len(y)
    if n == 0:
        return NAN
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    # n_b/n * |sum_y/n_b - sum_p/n_b| == |sum_y - sum_p| / n, no division by empty bins needed
    return float(np.abs(sum_y - sum_p).sum() / n)


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
    y = as_labels(frame[label])
    p = _probabilities(frame[score], f"column '{score}'")
    users = group_codes(frame[user]) if user is not None else None

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
