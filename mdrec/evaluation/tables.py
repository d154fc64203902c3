"""Tables over seeds: the "mean ± std" cells and the "model vs baseline" differences.

Every table that sums up several seeds (or runs) of a scorer goes through here, so that they all
follow one rule:

- missing values (NaN, None) are skipped: a cell counts only the values it has;
- the spread is the sample standard deviation (ddof=1) of those values;
- one value claims no spread: the cell is the value alone ("0.6500", not "0.6500 ± 0.0000");
- no value at all is "-", what :func:`mdrec.evaluation.metrics.format_table` and the HTML reports
  print for a missing number.

The input is long: one row per (row label, column, seed) with its value, the way runs come back
(``compare`` runs, transfer variants, compare-branches subsets). The row label is what a table row
shows (a model, a variant, a popularity bucket), the column what it measures (a metric, a slice).

- :func:`mean_std_table`: the rows x columns table of "mean ± std" strings;
- :func:`seed_stats`: its numbers (mean, std, n per row and column);
- :func:`versus`: each row's mean against a baseline row's, as a difference or a ratio (a
  baseline that is a column instead: swap "row" and "column" before calling);
- :func:`spread` and :func:`mean_std`: the rule on one cell, for a caller holding a list of values.
"""
from __future__ import annotations

from typing import Iterable, Literal, NamedTuple, Sequence

import numpy as np
import pandas as pd

LONG_COLUMNS = ("row", "column", "value")  # and optionally "seed", to refuse a seed counted twice
MISSING = "-"
DIGITS = 4


class Spread(NamedTuple):
    """One cell: the mean of its present values, their sample std (None below two values), how many."""

    mean: float
    std: float | None
    n: int


EMPTY = Spread(float("nan"), None, 0)


def spread(values: Iterable[float | None]) -> Spread:
    """The cell rule on the values [n] of one (row, column): missing ones skipped, ddof=1."""
    array = pd.Series(list(values), dtype=np.float64).to_numpy()
    present = array[~np.isnan(array)]
    if len(present) == 0:
        return EMPTY
    std = float(np.std(present, ddof=1)) if len(present) > 1 else None
    return Spread(float(np.mean(present)), std, len(present))


def mean_std(cell: Spread, digits: int = DIGITS) -> str:
    """"0.2000 ± 0.1000"; "0.2000" for one value; "-" for none."""
    if cell.n == 0:
        return MISSING
    if cell.std is None:
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def seed_stats(values: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the table: index (row, column) in order of first appearance; columns
    mean, std (NaN below two values), n (present values).

    values: long frame with columns row, column, value and optionally seed (one row per seed;
    a (row, column, seed) given twice is refused: it would count one seed twice).
    """
    cells = _spreads(values)
    index = pd.MultiIndex.from_arrays([[r for r, _ in cells], [c for _, c in cells]], names=["row", "column"])
    return pd.DataFrame({"mean": [s.mean for s in cells.values()],
                         "std": [np.nan if s.std is None else s.std for s in cells.values()],
                         "n": [s.n for s in cells.values()]}, index=index)


def mean_std_table(values: pd.DataFrame, *, rows: Sequence | None = None, columns: Sequence | None = None,
                   digits: int = DIGITS) -> pd.DataFrame:
    """Rows x columns of "mean ± std" strings (see the module's rule) from a long frame.

    rows, columns: the labels and their order (default: as they first appear in ``values``); a
    label with no value gets "-" cells. Returns object [len(rows), len(columns)], no axis names.
    """
    cells = _spreads(values)
    rows, columns = _order(values, rows, columns)
    text = {row: [mean_std(cells.get((row, column), EMPTY), digits) for column in columns] for row in rows}
    return pd.DataFrame.from_dict(text, orient="index", columns=columns, dtype=object)


def versus(values: pd.DataFrame, baseline, *, how: Literal["delta", "ratio"] = "delta",
           rows: Sequence | None = None, columns: Sequence | None = None) -> pd.DataFrame:
    """Each row's mean against the ``baseline`` row's mean, per column: mean − baseline ("delta")
    or mean / baseline ("ratio"; NaN where the baseline's mean is 0). Float [rows, columns] with
    the baseline row left out; a cell without values on either side is NaN.

    The means are those of the "mean ± std" cells (missing values skipped), so the difference is
    the one a reader computes from :func:`mean_std_table`.
    """
    if how not in ("delta", "ratio"):
        raise ValueError(f"how must be 'delta' or 'ratio', got {how!r}")
    cells = _spreads(values)
    rows, columns = _order(values, rows, columns)
    if not any(row == baseline for row, _ in cells):
        raise ValueError(f"the baseline {baseline!r} has no values")
    base = np.array([cells.get((baseline, c), EMPTY).mean for c in columns], dtype=np.float64)
    means = np.array([[cells.get((row, c), EMPTY).mean for c in columns] for row in rows if row != baseline],
                     dtype=np.float64).reshape(-1, len(columns))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = means - base if how == "delta" else means / np.where(base == 0, np.nan, base)
    return pd.DataFrame(out, index=[row for row in rows if row != baseline], columns=columns)


def _spreads(values: pd.DataFrame) -> dict[tuple, Spread]:
    """(row, column) -> its Spread, in order of first appearance."""
    missing = [c for c in LONG_COLUMNS if c not in values.columns]
    if missing:
        raise ValueError(f"a long frame needs columns {LONG_COLUMNS} (and optionally seed); {missing} missing")
    if "seed" in values.columns:
        repeated = values.duplicated(subset=["row", "column", "seed"])
        if repeated.any():
            first = values[repeated].iloc[0]
            raise ValueError(f"seed {first['seed']} of ({first['row']}, {first['column']}) is given twice")
    return {key: spread(part["value"]) for key, part in values.groupby(["row", "column"], sort=False)}


def _order(values: pd.DataFrame, rows: Sequence | None, columns: Sequence | None) -> tuple[list, list]:
    return (list(dict.fromkeys(values["row"])) if rows is None else list(rows),
            list(dict.fromkeys(values["column"])) if columns is None else list(columns))
