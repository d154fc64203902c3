"""``mdrec data convert``: a log validated against its spec and written as N shard files.

Rows are validated while converting (the same checks and messages as ``load_log``), then written
in the canonical layout of :mod:`mdrec.data.shard_format`, as TFRecord or Parquet, with
``manifest.json``. Each chunk read from the source is cut into N equal parts, one per shard, so
shards hold equal rows (within one row per chunk) and each is a sample of the whole log, whatever
its order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mdrec.data.shard_format import COMPRESSIONS, FORMATS, MANIFEST, canonical_columns, column_kinds
from mdrec.data.tfrecord import TFRecordWriter
from mdrec.errors import MdrecError
from mdrec.spec import Spec


def convert(spec: Spec, source: str | Path, out: str | Path, *, fmt: str = "tfrecord", shards: int = 8,
            compression: str = "none", chunk_rows: int = 65536, overwrite: bool = False, seed: int = 0,
            log=print) -> dict:
    """Validate ``source`` (a file or folder) against ``spec`` and write it as ``shards`` files.

    Streams: memory is bounded by ``chunk_rows``. Each chunk's rows are spread over the shards in a
    random order seeded by ``seed`` (a shard is not in the source's order). Written to a
    temporary folder and renamed, so ``out`` never holds half a conversion. Returns the manifest.
    """
    from mdrec.fileio import atomic_directory, atomic_write_json

    _check_options(fmt, compression, shards)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MdrecError("output folder exists and is not empty", path=str(out),
                         hint="choose a new --out, or pass --overwrite to replace it")
    kinds = column_kinds(spec)
    names = shard_names(fmt, compression, shards)
    with atomic_directory(out) as tmp:
        writers = [_writer(fmt, tmp / name, kinds, compression) for name in names]
        try:
            rows = _write_chunks(spec, source, writers, chunk_rows, seed, log)
        finally:
            for writer in writers:
                writer.close()
        total = sum(rows)
        if total == 0:
            raise MdrecError("the source has no data rows", path=str(source))
        manifest = {"format": fmt, "compression": compression if fmt == "tfrecord" else "snappy",
                    "spec": spec.name, "source": str(Path(source).resolve()), "rows": total,
                    "shuffled": {"within_chunks_of": chunk_rows, "seed": seed},
                    "columns": {c: {"kind": k, "length": n} for c, (k, n) in kinds.items()},
                    "shards": [{"file": name, "rows": r} for name, r in zip(names, rows)]}
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def _check_options(fmt: str, compression: str, shards) -> None:
    if fmt not in FORMATS:
        raise MdrecError(f"unknown shard format '{fmt}'; use {' or '.join(FORMATS)}")
    if compression not in COMPRESSIONS:
        raise MdrecError(f"unknown compression '{compression}'; use {' or '.join(COMPRESSIONS)}")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise MdrecError(f"--shards must be a positive integer, got {shards!r}")


def shard_names(fmt: str, compression: str, shards: int) -> list[str]:
    """The file names of ``shards`` shards: part-00000-of-0000N.tfrecord[.gz] / .parquet."""
    suffix = (".tfrecord" if fmt == "tfrecord" else ".parquet") + \
        (".gz" if compression == "gzip" and fmt == "tfrecord" else "")
    return [f"part-{i:05d}-of-{shards:05d}{suffix}" for i in range(shards)]


def _write_chunks(spec: Spec, source: str | Path, writers: list, chunk_rows: int, seed: int, log) -> list[int]:
    """Validate ``source`` chunk by chunk and spread each chunk's rows over ``writers``; rows per shard."""
    from mdrec.data.io import iter_chunks
    from mdrec.data.log import canonicalize

    shards = len(writers)
    rows = [0] * shards
    total = 0
    chunks = iter_chunks(source, chunk_rows, columns=spec.required_columns())
    for number, (file, start, chunk) in enumerate(chunks):
        part = canonicalize(chunk, spec, source=str(file), row_offset=start)
        columns = canonical_columns(part, chunk[spec.label.column].reset_index(drop=True), spec)
        # Rows in a seeded random order within the chunk, so that readers may shuffle
        # blocks of consecutive records instead of single records (much cheaper).
        order = np.random.default_rng([seed, number]).permutation(len(part))
        for offset, rows_of in enumerate(np.array_split(order, shards)):
            index = (offset + number) % shards  # the larger parts rotate over the shards
            if len(rows_of):
                writers[index].write({c: v[rows_of] for c, v in columns.items()})
                rows[index] += len(rows_of)
        total += len(part)
        log(f"{total:,} rows converted")
    return rows


class _ParquetWriter:
    """One Parquet shard being written: ``write`` a block of rows at a time (one row group), then
    ``close``."""

    def __init__(self, path: Path, kinds: dict, compression: str):
        import pyarrow as pa

        self.pa = pa
        self.path = path
        self.kinds = kinds
        fields = []
        for column, (kind, _) in kinds.items():
            fields.append(pa.field(column, pa.string() if kind == "bytes" else pa.float64() if kind == "float"
                                   else pa.int64() if kind == "int64" else pa.list_(pa.float32())))
        self.schema = pa.schema(fields)
        self.writer = None

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows: column -> values (n,), or (n, length) for a vector column."""
        import pyarrow.parquet as pq

        pa = self.pa
        arrays = []
        for column, (kind, _) in self.kinds.items():
            values = columns[column]
            if kind == "bytes":  # "" (missing) is stored as null, as a Parquet reader expects
                arrays.append(pa.array([v if v != "" else None for v in values], pa.string()))
            elif kind == "vector":
                arrays.append(pa.array(list(values.astype(np.float32)), pa.list_(pa.float32())))
            else:
                arrays.append(pa.array(values, self.schema.field(column).type))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(str(self.path), self.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        else:  # a shard that got no rows still exists (an empty table with the schema)
            import pyarrow.parquet as pq

            pq.write_table(self.schema.empty_table(), str(self.path))


def _writer(fmt: str, path: Path, kinds: dict, compression: str):
    return TFRecordWriter(path, kinds, compression) if fmt == "tfrecord" else _ParquetWriter(path, kinds, compression)
