"""Reading click logs: CSV, TSV or Parquet, one file or a folder of shards, whole or in chunks.

CSV/TSV cells are read as text and parsed later against the spec, so a bad value is reported with
its column and row instead of silently becoming NaN or a float id ("12.0").
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from io import StringIO
from pathlib import Path
from typing import IO, Iterator, Sequence

import pandas as pd

from mdrec.encoding import not_utf8
from mdrec.errors import MdrecError

_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".dat": "\t"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_TFRECORD_SUFFIXES = {".tfrecord", ".tfrecords", ".tfr"}  # shards of `mdrec data convert`


def table_files(path: str | Path) -> list[Path]:
    """The data files behind ``path``: itself, or the readable files of a folder (sorted)."""
    path = Path(path)
    if not path.exists():
        raise MdrecError("data file not found", path=str(path),
                         hint="check the path; a folder of CSV/TSV/Parquet shards also works")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and _kind(p) is not None)
        if not files:
            raise MdrecError("folder holds no .csv, .tsv, .parquet or .tfrecord files", path=str(path))
        return files
    if _kind(path) is None:
        raise MdrecError(f"unknown file type '{''.join(path.suffixes)}'", path=str(path),
                         hint="use .csv, .tsv, .parquet, .tfrecord (optionally .gz for text and TFRecord files)")
    return [path]


def _kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz"):
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    if suffixes[-1] in _PARQUET_SUFFIXES:
        return "parquet"
    if suffixes[-1] in _TFRECORD_SUFFIXES:
        return "tfrecord"
    if suffixes[-1] in _TEXT_SUFFIXES:
        return suffixes[-1]
    return None


def read_file(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One file as a DataFrame; text files keep every cell as a string (empty cell -> missing)."""
    kind = _kind(path)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "tfrecord":
            from mdrec.data.tfrecord import read_tfrecord_chunks

            parts = list(read_tfrecord_chunks(path, 1 << 20))
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        else:
            frame = pd.read_csv(path, sep=_TEXT_SUFFIXES[kind], dtype=str, keep_default_na=False,
                                na_values=[""], low_memory=False)
    except pd.errors.EmptyDataError:
        raise MdrecError("file is empty", path=str(path), hint="it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise _unreadable(path, kind, exc) from None
    _refuse_duplicate_columns(path, kind, frame.columns)
    if len(frame) == 0:
        raise MdrecError("file has a header but no data rows", path=str(path))
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise MdrecError(f"missing column(s) {', '.join(repr(c) for c in missing)}; the file has "
                             f"{', '.join(map(str, frame.columns))}", path=str(path),
                             hint="fix the spec's column names or the file")
        frame = frame[list(columns)]
    return frame


def iter_chunks(path: str | Path, chunk_rows: int = 65536,
                columns: Sequence[str] | None = None) -> Iterator[tuple[Path, int, pd.DataFrame]]:
    """Stream ``(file, first_row_number, chunk)`` without holding a whole file in memory."""
    for file in table_files(path):
        kind = _kind(file)
        if kind == "tfrecord":
            from mdrec.data.tfrecord import read_tfrecord_chunks

            start = 0
            for chunk in read_tfrecord_chunks(file, chunk_rows, columns):
                yield file, start, chunk
                start += len(chunk)
            if start == 0:
                raise MdrecError("file has no data rows", path=str(file))
        elif kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(file)
            present = set(parquet.schema_arrow.names)
            if columns is not None and not set(columns) <= present:
                read_file(file, columns)  # raises the missing-column error with the same wording
            start = 0
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=list(columns) if columns else None):
                chunk = batch.to_pandas()
                yield file, start, chunk
                start += len(chunk)
            if start == 0:
                raise MdrecError("file has no data rows", path=str(file))
        else:
            try:
                reader = pd.read_csv(file, sep=_TEXT_SUFFIXES[kind], dtype=str, keep_default_na=False,
                                     na_values=[""], chunksize=chunk_rows)
                start = 0
                for chunk in reader:
                    if start == 0:
                        _refuse_duplicate_columns(file, kind, chunk.columns)
                    if columns is not None:
                        missing = [c for c in columns if c not in chunk.columns]
                        if missing:
                            raise MdrecError(f"missing column(s) {', '.join(map(repr, missing))}",
                                             path=str(file))
                        chunk = chunk[list(columns)]
                    yield file, start, chunk
                    start += len(chunk)
            except pd.errors.EmptyDataError:
                raise MdrecError("file is empty", path=str(file)) from None
            except (pd.errors.ParserError, UnicodeDecodeError, EOFError, zlib.error, OSError) as exc:
                raise _unreadable(file, kind, exc) from None
            if start == 0:
                raise MdrecError("file has a header but no data rows", path=str(file))


def _open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed as pandas would (by suffix)."""
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rb")


def _unreadable(path: Path, kind: str | None, exc: BaseException) -> MdrecError:
    """One clear error for a file the parser gave up on: which line is not UTF-8, or that a
    compressed file ends early, rather than the parser's own exception."""
    if isinstance(exc, UnicodeDecodeError):
        try:
            with _open_bytes(path) as handle:
                return not_utf8(path, handle)
        except (EOFError, zlib.error, OSError):
            pass  # bad bytes in a damaged archive: the truncation is the problem to report
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)):
        return MdrecError(f"is truncated or damaged ({str(exc).splitlines()[0]})", path=str(path),
                          hint="copy or download the file again; nothing was read from it")
    return MdrecError(f"cannot be read as {kind}: {str(exc).splitlines()[0]}", path=str(path))


def _refuse_duplicate_columns(path: Path, kind: str | None, columns: Sequence) -> None:
    """Two columns of one name would leave which one the spec means to chance (pandas keeps the
    first and renames the next to "name.1"), so they are an error."""
    if kind in _TEXT_SUFFIXES:
        try:  # the header as written, before pandas renames duplicates
            with _open_bytes(path) as handle:
                header = next(iter(handle), b"").decode("utf-8", errors="replace").rstrip("\r\n")
        except (EOFError, zlib.error, OSError):
            return
        names = next(iter(pd.read_csv(StringIO(header), sep=_TEXT_SUFFIXES[kind], header=None,
                                      dtype=str, keep_default_na=False).itertuples(index=False)), ())
    else:
        names = tuple(map(str, columns))
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise MdrecError(f"two columns are named '{name}' (the second is column {position})", path=str(path),
                             hint="rename or drop one of them: which one the spec means would be ambiguous")
        seen.add(name)
