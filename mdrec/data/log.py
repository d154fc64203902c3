"""A click log checked against its spec and put in canonical form.

``load_log`` reads a file (or folder), checks every column the spec names, parses values and raises
one :class:`MdrecError` naming the file, the column and the first bad row (1-based data row, header
not counted). Nothing is dropped: missing values of nullable features are kept (mapped to the
missing token or the training mean later) and counted.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.data.columns import DOMAIN, GRADE, LABEL, SINGLE_DOMAIN, TIME
from mdrec.data.io import iter_chunks, read_file, table_files
from mdrec.data.parsed_logs import ParsedLogs
from mdrec.errors import MdrecError
from mdrec.spec import FeatureSpec, Spec



@dataclass
class Log:
    """A validated log.

    frame: one row per impression; a column per feature (str for categorical, list and text
        features; float64 for numeric, NaN where missing) plus LABEL (int8), DOMAIN (str),
        TIME (int64 seconds) when the spec has time and GRADE (float64, the label's source column)
        when the spec cuts the label from a column by a ``positive_if`` rule.
    dense: dense_vector features as float32 arrays of shape [rows, dim].
    missing: per feature, how many rows had no value.
    """

    frame: pd.DataFrame
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def copy(self) -> "Log":
        """A copy whose frame, arrays and counts can change without touching this log."""
        return Log(self.frame.copy(), {k: v.copy() for k, v in self.dense.items()}, dict(self.missing),
                   list(self.sources))

    def take(self, index: np.ndarray) -> "Log":
        return Log(self.frame.iloc[index].reset_index(drop=True),
                   {k: v[index] for k, v in self.dense.items()}, dict(self.missing), list(self.sources))

    @staticmethod
    def concat(logs: Sequence["Log"]) -> "Log":
        frame = pd.concat([log.frame for log in logs], ignore_index=True)
        dense = {k: np.concatenate([log.dense[k] for log in logs]) for k in logs[0].dense}
        missing: dict[str, int] = {}
        for log in logs:
            for key, value in log.missing.items():
                missing[key] = missing.get(key, 0) + value
        return Log(frame, dense, missing, [s for log in logs for s in log.sources])

    @property
    def labels(self) -> np.ndarray:
        return self.frame[LABEL].to_numpy()

    @property
    def grades(self) -> np.ndarray | None:
        """The label's source column (e.g. the rating) [N], or None for a 0/1 label."""
        return self.frame[GRADE].to_numpy() if GRADE in self.frame else None

    @property
    def domains(self) -> np.ndarray:
        return self.frame[DOMAIN].to_numpy(dtype=object)


PARSED = ParsedLogs()


def load_log(path: str | Path, spec: Spec, *, known_domains: Sequence[str] | None = None) -> Log:
    """Read ``path`` (file or folder of shards) and validate it against ``spec``. A file already
    parsed in this process with the same contents, spec and lines is not parsed again."""
    files = table_files(path)

    def parse() -> Log:
        logs = [canonicalize(read_file(file), spec, source=str(file), known_domains=known_domains) for file in files]
        return Log.concat(logs) if len(logs) > 1 else logs[0]

    settings = (tuple(str(f) for f in files), spec.dump(), None if known_domains is None else tuple(known_domains))
    return PARSED.get_or_parse(files, settings, parse, Log.copy)


def iter_logs(path: str | Path, spec: Spec, chunk_rows: int = 65536,
              known_domains: Sequence[str] | None = None):
    """Stream validated chunks of a log (for data that does not fit in memory)."""
    for file, start, chunk in iter_chunks(path, chunk_rows, columns=spec.required_columns()):
        yield canonicalize(chunk, spec, source=str(file), row_offset=start, known_domains=known_domains)


def canonicalize(frame: pd.DataFrame, spec: Spec, *, source: str = "<frame>", row_offset: int = 0,
                 known_domains: Sequence[str] | None = None) -> Log:
    """Check ``frame`` against ``spec`` and return the canonical :class:`Log`."""
    if len(frame) == 0:
        raise MdrecError("no data rows", path=source)
    missing_columns = [c for c in spec.required_columns() if c not in frame.columns]
    if missing_columns:
        raise MdrecError(f"missing column(s) {', '.join(repr(c) for c in missing_columns)} named by spec "
                         f"'{spec.name}'; the file has {', '.join(map(str, frame.columns))}", path=source,
                         hint="fix the spec's column names or add the column")
    frame = frame.reset_index(drop=True)
    ctx = _Context(source, row_offset)
    out: dict[str, object] = {}
    missing_counts: dict[str, int] = {}
    dense: dict[str, np.ndarray] = {}

    out[LABEL], grades = _parse_label(frame[spec.label.column], spec, ctx)
    if grades is not None:
        out[GRADE] = grades
    if spec.domain.column:
        domains = _parse_strings(frame[spec.domain.column], spec.domain.column, False, ctx)
        allowed = known_domains if known_domains is not None else spec.domain.values
        if allowed is not None:
            bad = ~np.isin(domains, np.asarray(list(allowed), dtype=object))
            if bad.any():
                row = int(np.argmax(bad))
                raise MdrecError(f"unknown domain '{domains[row]}'; known domains are "
                                 f"{', '.join(map(str, allowed))}", path=source,
                                 column=spec.domain.column, row=ctx.row(row),
                                 hint="a model serves only the domains it was trained on; "
                                      "list new domains in the spec and retrain")
        out[DOMAIN] = domains
    else:
        out[DOMAIN] = np.full(len(frame), SINGLE_DOMAIN, dtype=object)
    if spec.time:
        out[TIME] = _parse_time(frame[spec.time], spec.time, ctx)

    for feature in spec.features:
        column = frame[feature.column]
        nulls = column.isna().to_numpy()
        if nulls.any():
            if not feature.nullable:
                row = int(np.argmax(nulls))
                raise MdrecError(f"missing value in feature '{feature.name}', which the spec marks "
                                 "not nullable", path=source, column=feature.column, row=ctx.row(row),
                                 hint="fill the value or set `nullable: true` on the feature")
            missing_counts[feature.name] = int(nulls.sum())
        if feature.type == "numeric":
            out[feature.name] = _parse_numeric(column, feature, ctx)
        elif feature.type == "dense_vector":
            dense[feature.name] = _parse_vectors(column, feature, ctx)
        else:
            out[feature.name] = _parse_strings(column, feature.column, feature.nullable, ctx)
            _check_length(out[feature.name], feature, ctx)
    return Log(pd.DataFrame(out), dense, missing_counts, [source])


RARE_LINE_ROWS = 10  # fewer rows than this in a line the spec does not declare: likely a typo


def rare_line_warnings(log: Log, spec: Spec) -> list[str]:
    """One warning per line of ``log`` with fewer than RARE_LINE_ROWS rows, when the spec does not
    list its lines: a misspelt line name ("boook") would otherwise become a line of its own, trained
    and served without a word. Declared lines need no warning (unknown names are refused)."""
    if spec.domain.values is not None or not spec.domain.column:
        return []
    counts = pd.Series(log.domains).value_counts()
    common = [str(d) for d in counts.index[counts >= RARE_LINE_ROWS]]
    warnings = []
    for line, rows in counts[counts < RARE_LINE_ROWS].items():
        close = difflib.get_close_matches(str(line), common, n=1)
        guess = f" (a typo of '{close[0]}'?)" if close else ""
        warnings.append(f"warning: line '{line}' has only {rows} row(s) in {', '.join(log.sources)}{guess}; "
                        f"list the lines under the spec's domain.values to refuse unknown names")
    return warnings


def parse_keys(frame: pd.DataFrame, keys: Sequence[tuple[str, str]], source: str) -> pd.DataFrame:
    """Key columns of another file (e.g. predictions) parsed exactly as a log parses them, so they
    join with a log's frame. ``keys``: (file column, canonical or feature name); TIME parses as time,
    everything else as strings."""
    ctx = _Context(source, 0)
    return pd.DataFrame({name: (_parse_time(frame[column], column, ctx) if name == TIME else
                                _parse_strings(frame[column], column, True, ctx)) for column, name in keys})


class _Context:
    def __init__(self, source: str, row_offset: int):
        self.source = source
        self.row_offset = row_offset

    def row(self, index: int) -> int:
        """1-based data row number in the file (the header is not counted)."""
        return self.row_offset + index + 1


def _to_float(column: pd.Series, name: str, ctx: _Context, what: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna().to_numpy() & column.notna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"'{column.iloc[row]}' is not a number ({what})", path=ctx.source, column=name,
                         row=ctx.row(row))
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_label(column: pd.Series, spec: Spec, ctx: _Context) -> tuple[np.ndarray, np.ndarray | None]:
    """(the 0/1 labels int8, the values they were cut from float64 or None for a 0/1 column)."""
    name = spec.label.column
    nulls = column.isna().to_numpy()
    if nulls.any():
        raise MdrecError("missing label", path=ctx.source, column=name, row=ctx.row(int(np.argmax(nulls))),
                         hint="every impression needs a label")
    rule = spec.label.rule()
    if rule is None and column.dtype == bool:
        return column.to_numpy().astype(np.int8), None
    values = _to_float(column, name, ctx, "the label")
    if rule is not None:
        op, threshold = rule
        return op(values, threshold).astype(np.int8), values
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"label {column.iloc[row]!r} is not 0 or 1", path=ctx.source, column=name,
                         row=ctx.row(row),
                         hint="use a 0/1 column, or a rule such as `label: {column: rating, positive_if: \">= 4\"}`")
    return values.astype(np.int8), None


def _parse_time(column: pd.Series, name: str, ctx: _Context) -> np.ndarray:
    nulls = column.isna().to_numpy()
    if nulls.any():
        raise MdrecError("missing timestamp", path=ctx.source, column=name, row=ctx.row(int(np.argmax(nulls))))
    if pd.api.types.is_datetime64_any_dtype(column):
        return (column.astype("datetime64[s]").astype("int64")).to_numpy()
    numbers = pd.to_numeric(column, errors="coerce")
    is_number = numbers.notna().to_numpy()
    if is_number.all():
        return numbers.to_numpy(dtype=np.float64).astype(np.int64)
    if is_number.sum() * 2 >= len(column):  # a column of unix seconds: blame its first non-number
        row = int(np.argmax(~is_number))
        raise MdrecError(f"'{column.iloc[row]}' is neither unix seconds nor a date-time (the rest of the column "
                         "is unix seconds)", path=ctx.source, column=name, row=ctx.row(row),
                         hint="one format per time column: unix seconds or date-times")
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy() | is_number  # a number among date-times is no date-time either
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"'{column.iloc[row]}' is neither unix seconds nor a date-time", path=ctx.source,
                         column=name, row=ctx.row(row), hint="one format per time column: unix seconds or date-times")
    return (parsed.dt.tz_localize(None).astype("datetime64[s]").astype("int64")).to_numpy()


def _parse_numeric(column: pd.Series, feature: FeatureSpec, ctx: _Context) -> np.ndarray:
    values = _to_float(column, feature.column, ctx, f"feature '{feature.name}' is numeric")
    if not np.isfinite(values[~np.isnan(values)]).all():
        row = int(np.argmax(np.isinf(values)))
        raise MdrecError("infinite value", path=ctx.source, column=feature.column, row=ctx.row(row))
    if feature.transform == "log1p":
        negative = values < 0
        if negative.any():
            row = int(np.argmax(negative))
            raise MdrecError(f"negative value {values[row]} under `transform: log1p`", path=ctx.source,
                             column=feature.column, row=ctx.row(row))
    return values


# Longest value accepted: an id (or list of ids) or a text. Longer ones are almost always a
# mis-parsed file (a whole document in an id column); a 1M-character id trains, 6x slower, and
# grows transform.json 40x. Text beyond `length` tokens is never read anyway.
MAX_ID_CHARS = 1_000
MAX_TEXT_CHARS = 100_000


def _check_length(values: np.ndarray, feature: FeatureSpec, ctx: _Context) -> None:
    limit = MAX_TEXT_CHARS if feature.type == "text" else MAX_ID_CHARS * (100 if feature.type == "categorical_list" else 1)
    lengths = _lengths(values)
    if len(lengths) and lengths.max() > limit:
        row = int(np.argmax(lengths > limit))
        raise MdrecError(f"value of {lengths[row]:,} characters in feature '{feature.name}' (the limit for a "
                         f"{feature.type} value is {limit:,})", path=ctx.source, column=feature.column, row=ctx.row(row),
                         hint="check the file's separator and quoting; shorten or hash long ids, cut long texts")


def _lengths(values: np.ndarray) -> np.ndarray:
    """int64 [n]: the characters of each str in ``values`` (counted by pyarrow, not a Python loop)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_length(pa.array(values, type=pa.large_string())).to_numpy(zero_copy_only=False).astype(np.int64)


def _parse_strings(column: pd.Series, name: str, nullable: bool, ctx: _Context) -> np.ndarray:
    """Values as Python str; integral floats ("12.0" from a column with gaps) print as integers."""
    if pd.api.types.is_float_dtype(column):
        finite = column.dropna()
        if len(finite) and (finite == np.floor(finite)).all():
            column = column.astype("Int64")
    if isinstance(column.dtype, pd.StringDtype):  # already str (parquet's and CSV's text): no str() per value
        out = column.to_numpy(dtype=object, na_value="")
    else:
        values = column.astype(object).to_numpy()
        nulls = pd.isna(values)
        out = np.empty(len(values), dtype=object)
        out[~nulls] = [str(v) for v in values[~nulls]]
        out[nulls] = ""
    if not nullable:
        empty = out == ""
        if empty.any():
            raise MdrecError("empty value", path=ctx.source, column=name, row=ctx.row(int(np.argmax(empty))),
                             hint="this column may not be empty")
    return out


def _parse_vectors(column: pd.Series, feature: FeatureSpec, ctx: _Context) -> np.ndarray:
    parsed = _vectors_at_once(column, feature)
    if parsed is not None and np.isfinite(parsed).all():
        return parsed
    # Row by row: lists and arrays as values, and the row and reason of any bad value.
    out = np.zeros((len(column), feature.dim), dtype=np.float32)
    for index, value in enumerate(column.to_numpy(dtype=object)):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue  # a missing vector stays zero (counted in Log.missing)
        if isinstance(value, str):
            parts = value.split(feature.separator) if feature.separator.strip() else value.split()
        else:
            parts = list(value)
        if len(parts) != feature.dim:
            raise MdrecError(f"vector has {len(parts)} values, the spec says dim {feature.dim}",
                             path=ctx.source, column=feature.column, row=ctx.row(index))
        try:
            out[index] = np.asarray(parts, dtype=np.float32)
        except ValueError:
            raise MdrecError(f"vector {str(value)[:40]!r} holds a value that is not a number",
                             path=ctx.source, column=feature.column, row=ctx.row(index)) from None
    if not np.isfinite(out).all():
        row = int(np.argmax(~np.isfinite(out).all(axis=1)))
        raise MdrecError("vector holds NaN or infinity", path=ctx.source, column=feature.column, row=ctx.row(row))
    return out


def _vectors_at_once(column: pd.Series, feature: FeatureSpec) -> np.ndarray | None:
    """float32 [rows, dim] from a column of strings in one vectorised pass (pyarrow's split and
    cast, several times faster than splitting each row in Python), or None when any value is not
    a string of ``dim`` numbers: the row-by-row parse then reads it, or names the row. A missing
    value stays zero."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        strings = pa.array(column, type=pa.string(), from_pandas=True)
        present = strings.is_valid().to_numpy(zero_copy_only=False)
        strings = strings.drop_null()
        if feature.separator.strip():
            parts = pc.split_pattern(strings, pattern=feature.separator)
        else:  # str.split(): runs of whitespace, none at either end
            parts = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(strings))
        if len(parts) and not (pc.list_value_length(parts).to_numpy() == feature.dim).all():
            return None
        # Through float64, as float(text) then float32 reads it: the same float32 to the bit.
        numbers = pc.cast(pc.list_flatten(parts), pa.float64()).to_numpy()
    except (pa.ArrowException, TypeError, ValueError):
        return None
    out = np.zeros((len(column), feature.dim), dtype=np.float32)
    out[present] = numbers.reshape(-1, feature.dim)
    return out
