"""Reading raw source files with line-accurate errors.

:func:`read_tsv` reads one tab-separated raw file and checks every line against its :class:`Col`
list; the first bad line raises :class:`MdrecError` naming the file, the line, the field and what
was expected. :func:`source_file` finds a dataset's file in its raw folder (with or without
``.gz``) and :func:`file_note` records what was read (size, sha256, data rows) for ``prepare.json``.
``EXPECTED`` and ``FOLDERS`` say what each dataset family's raw folder holds and where it lives.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError
from mdrec.progress import reading

EXPECTED = {
    "douban-book-music": "douban_book_ratings.dat.gz and douban_music_ratings.dat.gz (TSV without header: "
                         "user, item, rating)",
    "movielens-1m": "ml-1m.inter.gz, ml-1m.item and ml-1m.user (RecBole atomic TSV files with a header)",
    "movielens-1m-sequential": "ml-1m.inter.gz (RecBole atomic TSV file with a header)",
    "amazon": "one subfolder per side of the pair, e.g. cloth_sport/ and sport_cloth/, each holding train.txt.gz "
              "and test.txt (TSV without header: user, item, 1; the DisenCDR dataset/ layout)",
}
FOLDERS = {"douban-book-music": "douban-book-music", "movielens-1m": "movielens-1m",
           "movielens-1m-sequential": "movielens-1m",
           "amazon": "amazon-cdr-disencdr"}


def family(name: str) -> str:
    """The key of dataset ``name`` in ``EXPECTED`` and ``FOLDERS`` (every Amazon pair shares one)."""
    return "amazon" if name.startswith("amazon-") else name


def source_file(folder: Path, name: str, dataset: str) -> Path:
    """``folder/name``, also accepting the file with or without a trailing ``.gz``."""
    candidates = [folder / name, folder / (name[:-3] if name.endswith(".gz") else name + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MdrecError(f"missing file; dataset '{dataset}' expects {EXPECTED[family(dataset)]}",
                     path=str(folder / name), hint=f"the raw folder is ../shared/data/{FOLDERS[family(dataset)]}")


def file_note(path: Path, rows: int) -> dict[str, Any]:
    """What ``prepare.json`` records about a file read: absolute path, bytes, sha256, data rows."""
    with open(path, "rb") as handle:  # in blocks: a large log need not fit in memory twice
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest, "data_rows": int(rows)}


@dataclass(frozen=True)
class Col:
    """One raw column: ``name`` in our output, ``kind`` int/float/str, ``header`` in the raw file."""

    name: str
    kind: str
    header: str | None = None
    allowed: frozenset | None = None  # for int columns: the only valid values
    minimum: float | None = None
    nullable: bool = False  # an empty cell is a missing value, not a bad line

    def describe(self) -> str:
        if self.allowed is not None:
            return f"one of {', '.join(map(str, sorted(self.allowed)))}"
        what = {"int": "an integer", "float": "a number", "str": "a non-empty value"}[self.kind]
        return what + (f" >= {self.minimum:g}" if self.minimum is not None else "")


def read_tsv(path: Path, columns: list[Col], *, header: bool, notes: dict) -> pd.DataFrame:
    """Read a tab-separated raw file and check every line against ``columns``.

    Returns the parsed columns (int64 / float64 / str) indexed by the 1-based line number. Fully
    blank lines are skipped and counted in ``notes``; any other bad line raises :class:`MdrecError`
    naming the file and the first bad line.
    """
    expected = [c.header or c.name for c in columns]
    raw = _read_text(path, expected, header=header)
    raw.index = raw.index + 1  # line numbers
    raw, width = _name_columns(raw, path, expected, header=header)
    raw = _drop_blank_lines(raw, path, expected, notes)

    parsed: dict[str, pd.Series] = {}
    first_bad: tuple[int, Col] | None = None
    for col, head in zip(columns, expected):
        values, bad = _parse_column(raw[head], col)
        if bad.any():
            line = int(bad.idxmax())
            if first_bad is None or line < first_bad[0]:
                first_bad = (line, col)
        parsed[col.name] = values
    if first_bad is not None:
        _raise_bad_value(path, raw, *first_bad, expected, width=width, header=header)
    frame = pd.DataFrame(parsed)
    frame.index.name = "line"
    return frame


def _read_text(path: Path, expected: list[str], *, header: bool) -> pd.DataFrame:
    """Every field of ``path`` as text, one row per line (blank lines included)."""
    try:
        # Everything as text, no quoting (titles may hold quotes), blank lines kept so that row i is
        # line i + 1 and error messages can point at the exact line. Read through a handle that
        # reports progress (a large log takes a while); pandas decompresses it as it would the path.
        with reading(path) as handle:
            return pd.read_csv(handle, sep="\t", header=None, dtype=str, keep_default_na=False, na_values=[],
                               quoting=csv.QUOTE_NONE, skip_blank_lines=False, encoding="utf-8",
                               compression="gzip" if path.suffix == ".gz" else None)
    except FileNotFoundError:
        raise MdrecError("file not found", path=str(path)) from None
    except pd.errors.EmptyDataError:
        raise MdrecError("file is empty", path=str(path),
                         hint=f"expected tab-separated lines: {', '.join(expected)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError):
        _raise_first_structural_problem(path, len(expected) if not header else None, expected)
        raise  # unreachable: the scan raises
    except (OSError, EOFError, zlib.error) as exc:
        raise MdrecError(f"cannot be read: {exc}", path=str(path)) from None


def _name_columns(raw: pd.DataFrame, path: Path, expected: list[str], *,
                  header: bool) -> tuple[pd.DataFrame, int]:
    """Name the columns from the header line (which must hold every expected name) or, without a
    header, from ``expected`` (every line must have that many fields); also the fields per line."""
    if header:
        names = raw.iloc[0].tolist()
        missing = [h for h in expected if h not in names]
        if missing:
            raise MdrecError(f"line 1: header lacks {', '.join(map(repr, missing))}; expected a header with "
                             f"{', '.join(expected)}, found {', '.join(map(str, names))}", path=str(path))
        raw.columns = names
        return raw.iloc[1:], len(names)
    width = len(expected)
    if raw.shape[1] != width:
        _raise_first_structural_problem(path, width, expected)
    raw.columns = expected
    return raw, width


def _drop_blank_lines(raw: pd.DataFrame, path: Path, expected: list[str], notes: dict) -> pd.DataFrame:
    """``raw`` without fully blank lines (counted in ``notes``); raises when no data line is left."""
    blank = (raw == "").all(axis=1)
    if blank.any():
        notes.setdefault("dropped", {})[f"blank lines in {path.name}"] = int(blank.sum())
        raw = raw[~blank.to_numpy()]
    if len(raw) == 0:
        raise MdrecError("file has no data lines", path=str(path),
                         hint=f"expected tab-separated lines: {', '.join(expected)}")
    return raw


def _parse_column(text: pd.Series, col: Col) -> tuple[pd.Series, pd.Series]:
    """One column's values (int64 / float64 / str) and, per line, whether its field is bad."""
    if col.kind == "str":
        bad = (text == "") if not col.nullable else pd.Series(False, index=text.index)
        return text.where(text != "", None).astype("str"), bad
    values = pd.to_numeric(text, errors="coerce")
    empty = text == ""
    bad = values.isna() & ~(empty & col.nullable)
    if col.kind == "int":
        bad |= values.notna() & (values != np.floor(values))
    if col.allowed is not None:
        bad |= values.notna() & ~values.isin(col.allowed)
    if col.minimum is not None:
        bad |= values.notna() & (values < col.minimum)
    if col.kind == "int" and not bad.any() and not col.nullable:
        return values.astype(np.int64), bad
    return values.astype(np.float64), bad


def _raise_bad_value(path: Path, raw: pd.DataFrame, line: int, col: Col, expected: list[str], *,
                     width: int, header: bool) -> None:
    """Raise for the first bad line: a wrong field count, or the bad field and what it should be."""
    text = _line_text(path, line)
    fields = text.split("\t")
    if len(fields) != width:
        problem = f"expected {width} tab-separated fields ({', '.join(expected)}), found {len(fields)}"
    else:
        value = fields[(raw.columns.get_loc(col.header) if header else expected.index(col.name))]
        problem = f"{col.header or col.name} is {value!r}, expected {col.describe()}"
    raise MdrecError(f"line {line}: {problem}: {text[:120]!r}", path=str(path),
                     hint="fix or remove the line; no rows are dropped silently")


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rb")


def _line_text(path: Path, line: int) -> str:
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return ""


def _raise_first_structural_problem(path: Path, width: int | None, expected: list[str]) -> None:
    """Find the first line that is not UTF-8 or has the wrong number of fields, and raise for it.

    With a header, ``width`` is None and the header's own field count is the reference.
    """
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise MdrecError(f"line {number}: not UTF-8 text: {raw[:120]!r}", path=str(path)) from None
            fields = text.split("\t")
            if width is None:
                width = len(fields)
                continue
            if text and len(fields) != width:
                raise MdrecError(f"line {number}: expected {width} tab-separated fields "
                                 f"({', '.join(expected)}), found {len(fields)}: {text[:120]!r}", path=str(path),
                                 hint="fix or remove the line; no rows are dropped silently")
    raise MdrecError("cannot be parsed as tab-separated text", path=str(path))
