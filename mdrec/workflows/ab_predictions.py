"""Per-row values an offline A/B reads from files and aligns to the log's rows: a prediction
file's scores (a side given as logged predictions, e.g. production's) and the logging policy's
propensities (for IPS)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.io import read_file, table_files
from mdrec.data.log import DOMAIN, TIME, Log, parse_keys
from mdrec.errors import MdrecError
from mdrec.spec import Spec


def prediction_keys(spec: Spec) -> list[tuple[str, str]]:
    """(file column, log frame column) of the keys a prediction file must carry: user id, item id,
    the domain column if the spec has one, the time column if the spec has one."""
    keys = [(spec.user_id.column, spec.user_id.name), (spec.item_id.column, spec.item_id.name)]
    if spec.domain.column:
        keys.append((spec.domain.column, DOMAIN))
    if spec.time:
        keys.append((spec.time, TIME))
    return keys


def read_predictions(path: str | Path, log: Log, spec: Spec, score_column: str = "score") -> np.ndarray:
    """Scores (n,) of a prediction file, in the log's row order, joined on :func:`prediction_keys`.

    Key values are parsed exactly as the log's (ids as text, times as unix seconds). Rows with equal
    keys are matched in file order. Every log row needs exactly one prediction and every
    prediction one log row; scores must be finite probabilities in [0, 1].
    """
    keys = prediction_keys(spec)
    source = str(path)
    frame = _prediction_frame(path, keys, spec, score_column)
    scores = _checked_scores(frame[score_column], score_column, source)
    return scores[_prediction_rows(frame, log, keys, source)]


def _prediction_frame(path: str | Path, keys: list[tuple[str, str]], spec: Spec, score_column: str) -> pd.DataFrame:
    """The prediction file(s) as one frame, after checking it has the key and score columns."""
    frames = [read_file(f) for f in table_files(path)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = [c for c, _ in keys if c not in frame.columns]
    if missing:
        raise MdrecError(f"prediction file lacks key column(s) {', '.join(map(repr, missing))}; it needs "
                         f"{', '.join(repr(c) for c, _ in keys)} (user id, item id"
                         f"{', domain' if spec.domain.column else ''}{', time' if spec.time else ''} of spec "
                         f"'{spec.name}') and a score column; it has {', '.join(map(str, frame.columns))}",
                         path=str(path), hint="add the log's key columns to the predictions")
    if score_column not in frame.columns:
        raise MdrecError(f"no score column '{score_column}'; the file has {', '.join(map(str, frame.columns))}",
                         path=str(path), hint="name the probability column with --score-column")
    return frame


def _checked_scores(raw: pd.Series, score_column: str, source: str) -> np.ndarray:
    """The score column as float64 (n,), every value a finite probability in [0, 1]."""
    scores = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(scores)
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"score {raw.iloc[row]!r} is not a finite number", path=source,
                         column=score_column, row=row + 1, hint="every row needs a probability; drop "
                         "or fix the row in both the log and the predictions")
    bad = (scores < 0) | (scores > 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"score {scores[row]!r} is outside [0, 1]", path=source, column=score_column,
                         row=row + 1, hint="give click probabilities (apply the sigmoid to logits)")
    return scores


def _prediction_rows(frame: pd.DataFrame, log: Log, keys: list[tuple[str, str]], source: str) -> np.ndarray:
    """For each log row, the prediction row with its keys (n,) int64; refuses rows left unmatched."""
    theirs = parse_keys(frame, keys, source)
    ours = log.frame[[name for _, name in keys]].reset_index(drop=True)
    names = [name for _, name in keys]
    for table in (theirs, ours):
        table["__nth__"] = table.groupby(names, sort=False).cumcount()  # duplicates pair in order
    theirs["__pred_row__"] = np.arange(len(theirs))
    ours["__log_row__"] = np.arange(len(ours))
    joined = ours.merge(theirs, on=names + ["__nth__"], how="outer", indicator=True)
    _refuse_unmatched(joined, keys, len(ours), source)
    joined = joined.sort_values("__log_row__")
    return joined["__pred_row__"].to_numpy(dtype=np.int64)


def _refuse_unmatched(joined: pd.DataFrame, keys: list[tuple[str, str]], log_rows: int, source: str) -> None:
    """Raise on the first log row without a prediction, else on the first prediction without a log row."""
    unmatched = joined[joined["_merge"] == "left_only"].sort_values("__log_row__")
    if len(unmatched):
        first = unmatched.iloc[0]
        raise MdrecError(f"{len(unmatched):,} of the log's {log_rows:,} rows have no prediction; first: log "
                         f"row {int(first['__log_row__']) + 1} ({_describe(first, keys)})", path=source,
                         hint=f"the predictions must score every row of the log once, keyed by "
                              f"{', '.join(c for c, _ in keys)}")
    extra = joined[joined["_merge"] == "right_only"].sort_values("__pred_row__")
    if len(extra):
        first = extra.iloc[0]
        raise MdrecError(f"{len(extra):,} prediction rows match no log row; first: row "
                         f"{int(first['__pred_row__']) + 1} ({_describe(first, keys)})", path=source,
                         hint="score exactly the rows of --data (same keys; a row repeated in the log is "
                              "repeated in the predictions)")


def _describe(row, keys: list[tuple[str, str]]) -> str:
    """A joined row's keys as the file names them: "user=..., item=..."."""
    return ", ".join(f"{col}={row[name]!r}" for col, name in keys)


# inverse propensity scoring: the logging policy's propensities
def read_propensities(data: str | Path, column: str, n: int) -> np.ndarray:
    """The logging policy's propensities (n,) from ``data``'s ``column``: finite, in (0, 1]."""
    frames = []
    for file in table_files(data):
        frame = read_file(file)
        if column not in frame.columns:
            raise MdrecError(f"no propensity column '{column}'; the file has {', '.join(map(str, frame.columns))}",
                             path=str(file), hint="name the logging policy's probability column with --propensity")
        frames.append(frame[column])
    raw = pd.concat(frames, ignore_index=True)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(values) & (values > 0) & (values <= 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"propensity {raw.iloc[row]!r} is not a probability in (0, 1]", path=str(data),
                         column=column, row=row + 1, hint="IPS divides by the propensity: every row needs one")
    if len(values) != n:
        raise MdrecError(f"{len(values)} propensities for {n} log rows", path=str(data), column=column)
    return values
