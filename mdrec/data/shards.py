"""Sharded logs: ``mdrec data convert`` writes them, tf.data reads them one file shard per worker.

A converted log is a folder of N shard files (TFRecord or Parquet) plus ``manifest.json``. Rows
are validated against the spec while converting (the same checks and messages as ``load_log``),
then written in canonical form, one record per row, keyed by the spec's *column* names, so the
folder is again a log for the same spec (``load_log``, ``iter_logs``, ``mdrec spec check`` and
``mdrec train`` read it like a CSV) and a parser needs no Python:

- label column: float (the raw value, e.g. a rating; the spec's ``positive_if`` still applies);
- domain and categorical / list / text columns: bytes, "" where a value is missing;
- numeric columns: float (NaN where missing; float32 in TFRecord, float64 in Parquet);
- dense_vector columns: ``dim`` floats (zeros where missing, as in a loaded log);
- the time column: int64 unix seconds.

Each chunk read from the source is cut into N equal parts, one per shard, so shards hold equal
rows (within one row per chunk) and each is a sample of the whole log, whatever its order.

Reading: :func:`tfrecord_dataset` is pure TensorFlow (``TFRecordDataset`` + ``parse_example``), so
it runs on parameter-server workers, which execute graphs and cannot call back into Python;
:func:`sharded_dataset` also reads Parquet / CSV shards through Python (single process,
mirrored, multi-worker). Both take a worker's share of the files (``shard=(count, index)``; the
index may be a tensor, e.g. ``tf.distribute.coordinator.experimental_get_current_worker_index()``).
"""
from __future__ import annotations

import json
import math
import operator
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError
from mdrec.spec import Spec

FORMATS = ("tfrecord", "parquet")
COMPRESSIONS = ("none", "gzip")
MANIFEST = "manifest.json"
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")


# ---- the record layout ---------------------------------------------------------------------------

def column_kinds(spec: Spec) -> dict[str, tuple[str, int]]:
    """column -> (kind, length): kind is "bytes", "float", "int64" or "vector" (``length`` floats)."""
    kinds: dict[str, tuple[str, int]] = {spec.label.column: ("float", 1)}
    if spec.domain.column:
        kinds[spec.domain.column] = ("bytes", 1)
    if spec.time:
        kinds[spec.time] = ("int64", 1)
    readers: dict[str, str] = {}
    for feature in spec.features:
        kind = ("float", 1) if feature.type == "numeric" else ("vector", feature.dim) \
            if feature.type == "dense_vector" else ("bytes", 1)
        if feature.column in kinds and kinds[feature.column] != kind:
            first = readers.get(feature.column, "the label, domain or time")
            raise MdrecError(f"column '{feature.column}' is read as {feature.type} by feature '{feature.name}' "
                             f"and differently by {first}; a shard stores one type per column",
                             path=spec.source, hint="give the second feature its own column")
        kinds[feature.column] = kind
        readers.setdefault(feature.column, f"feature '{feature.name}'")
    return kinds


def _columns(log, raw_label: pd.Series, spec: Spec) -> dict[str, np.ndarray]:
    """A validated chunk as column -> canonical values (see the module docstring)."""
    from mdrec.data.log import DOMAIN, TIME

    if raw_label.dtype == bool:
        label = raw_label.to_numpy().astype(np.float64)
    else:
        label = pd.to_numeric(raw_label, errors="coerce").to_numpy(dtype=np.float64)
    out: dict[str, np.ndarray] = {spec.label.column: label}
    if spec.domain.column:
        out[spec.domain.column] = log.frame[DOMAIN].to_numpy(dtype=object)
    if spec.time:
        out[spec.time] = log.frame[TIME].to_numpy(dtype=np.int64)
    for feature in spec.features:
        if feature.column in out:
            continue
        if feature.type == "dense_vector":
            out[feature.column] = log.dense[feature.name]
        elif feature.type == "numeric":
            out[feature.column] = log.frame[feature.name].to_numpy(dtype=np.float64)
        else:
            out[feature.column] = log.frame[feature.name].to_numpy(dtype=object)
    return out


# ---- writing -------------------------------------------------------------------------------------

def convert(spec: Spec, source: str | Path, out: str | Path, *, fmt: str = "tfrecord", shards: int = 8,
            compression: str = "none", chunk_rows: int = 65536, overwrite: bool = False, seed: int = 0,
            log=print) -> dict:
    """Validate ``source`` (a file or folder) against ``spec`` and write it as ``shards`` files.

    Streams: memory is bounded by ``chunk_rows``. Each chunk's rows are spread over the shards in a
    random order seeded by ``seed`` (a shard is not in the source's order). Written to a
    temporary folder and renamed, so ``out`` never holds half a conversion. Returns the manifest.
    """
    from mdrec.data.io import iter_chunks
    from mdrec.data.log import canonicalize
    from mdrec.fileio import atomic_directory, atomic_write_json

    if fmt not in FORMATS:
        raise MdrecError(f"unknown shard format '{fmt}'; use {' or '.join(FORMATS)}")
    if compression not in COMPRESSIONS:
        raise MdrecError(f"unknown compression '{compression}'; use {' or '.join(COMPRESSIONS)}")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise MdrecError(f"--shards must be a positive integer, got {shards!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MdrecError("output folder exists and is not empty", path=str(out),
                         hint="choose a new --out, or pass --overwrite to replace it")
    kinds = column_kinds(spec)
    suffix = (".tfrecord" if fmt == "tfrecord" else ".parquet") + \
        (".gz" if compression == "gzip" and fmt == "tfrecord" else "")
    names = [f"part-{i:05d}-of-{shards:05d}{suffix}" for i in range(shards)]
    rows = [0] * shards
    total = 0
    with atomic_directory(out) as tmp:
        writers = [_writer(fmt, tmp / name, kinds, compression) for name in names]
        try:
            chunks = iter_chunks(source, chunk_rows, columns=spec.required_columns())
            for number, (file, start, chunk) in enumerate(chunks):
                part = canonicalize(chunk, spec, source=str(file), row_offset=start)
                columns = _columns(part, chunk[spec.label.column].reset_index(drop=True), spec)
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
        finally:
            for writer in writers:
                writer.close()
        if total == 0:
            raise MdrecError("the source has no data rows", path=str(source))
        manifest = {"format": fmt, "compression": compression if fmt == "tfrecord" else "snappy",
                    "spec": spec.name, "source": str(Path(source).resolve()), "rows": total,
                    "shuffled": {"within_chunks_of": chunk_rows, "seed": seed},
                    "columns": {c: {"kind": k, "length": n} for c, (k, n) in kinds.items()},
                    "shards": [{"file": name, "rows": r} for name, r in zip(names, rows)]}
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def read_manifest(path: str | Path) -> dict | None:
    """The folder's manifest.json (None for a folder not written by ``mdrec data convert``)."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else None
    if file is None or not file.is_file():
        return None
    return json.loads(file.read_text())


def count_rows(path: str | Path) -> int | None:
    """Rows of a converted folder (from its manifest), else None."""
    manifest = read_manifest(path)
    return None if manifest is None else int(manifest["rows"])


class _TFRecordWriter:
    def __init__(self, path: Path, kinds: dict, compression: str):
        import mdrec  # noqa: F401
        import tensorflow as tf

        self.tf = tf
        self.kinds = kinds
        self.writer = tf.io.TFRecordWriter(str(path), options="GZIP" if compression == "gzip" else None)

    def write(self, columns: dict[str, np.ndarray]) -> None:
        train = self.tf.train
        n = len(next(iter(columns.values())))
        # Per column, the Feature of every row (built column-wise: fewer Python branches per value).
        features: dict[str, list] = {}
        for column, (kind, _) in self.kinds.items():
            values = columns[column]
            if kind == "bytes":
                features[column] = [train.Feature(bytes_list=train.BytesList(value=[v.encode("utf-8")]))
                                    for v in values]
            elif kind == "float":
                features[column] = [train.Feature(float_list=train.FloatList(value=[v]))
                                    for v in values.astype(np.float32).tolist()]
            elif kind == "int64":
                features[column] = [train.Feature(int64_list=train.Int64List(value=[v])) for v in values.tolist()]
            else:
                features[column] = [train.Feature(float_list=train.FloatList(value=v))
                                    for v in values.astype(np.float32).tolist()]
        names = list(features)
        for i in range(n):
            example = train.Example(features=train.Features(feature={c: features[c][i] for c in names}))
            self.writer.write(example.SerializeToString())

    def close(self) -> None:
        self.writer.close()


class _ParquetWriter:
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
    return _TFRecordWriter(path, kinds, compression) if fmt == "tfrecord" else _ParquetWriter(path, kinds, compression)


# ---- reading in Python (load_log, iter_logs, Transform.fit) --------------------------------------

def is_tfrecord(path: Path) -> bool:
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TFRECORD_SUFFIXES


def _compression(path) -> str | None:
    return "GZIP" if str(path).lower().endswith(".gz") else None


def tfrecord_schema(path: Path) -> dict[str, tuple[str, int]]:
    """column -> (kind, length) of a TFRecord shard: from the folder's manifest, else from its
    first record."""
    import mdrec  # noqa: F401
    import tensorflow as tf

    manifest = read_manifest(Path(path).parent)
    if manifest is not None and manifest.get("format") == "tfrecord":
        return {c: (v["kind"], int(v["length"])) for c, v in manifest["columns"].items()}

    try:
        first = next(iter(tf.data.TFRecordDataset(str(path), compression_type=_compression(path)).take(1)), None)
    except tf.errors.OpError as exc:
        raise MdrecError(f"cannot be read as TFRecord: {exc.message.splitlines()[0]}", path=str(path)) from None
    if first is None:
        return {}
    example = tf.train.Example.FromString(first.numpy())
    schema = {}
    for column, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            schema[column] = ("bytes", 1)
        elif kind == "int64_list":
            schema[column] = ("int64", 1)
        else:
            length = len(feature.float_list.value)
            schema[column] = ("float", 1) if length == 1 else ("vector", length)
    return schema


def _feature_description(schema: dict[str, tuple[str, int]]):
    import tensorflow as tf

    out = {}
    for column, (kind, length) in schema.items():
        if kind == "bytes":
            out[column] = tf.io.FixedLenFeature([], tf.string, default_value="")
        elif kind == "int64":
            out[column] = tf.io.FixedLenFeature([], tf.int64)
        elif kind == "float":
            out[column] = tf.io.FixedLenFeature([], tf.float32, default_value=float("nan"))
        else:
            out[column] = tf.io.FixedLenFeature([length], tf.float32)
    return out


def read_tfrecord_chunks(path: Path, chunk_rows: int = 65536,
                         columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """A TFRecord shard as DataFrames of ``chunk_rows`` rows (bytes -> str, "" -> missing)."""
    import mdrec  # noqa: F401
    import tensorflow as tf

    schema = tfrecord_schema(path)
    if columns is not None:
        missing = [c for c in columns if c not in schema]
        if missing and schema:
            raise MdrecError(f"missing column(s) {', '.join(map(repr, missing))}; the file has "
                             f"{', '.join(schema)}", path=str(path), hint="fix the spec's column names or the file")
        schema = {c: schema[c] for c in columns if c in schema}
    if not schema:
        return
    description = _feature_description(schema)
    dataset = tf.data.TFRecordDataset(str(path), compression_type=_compression(path)).batch(chunk_rows)
    try:
        for batch in dataset:
            parsed = tf.io.parse_example(batch, description)
            frame = {}
            for column, (kind, _) in schema.items():
                values = parsed[column].numpy()
                if kind == "bytes":
                    text = np.array([v.decode("utf-8") for v in values], dtype=object)
                    text[text == ""] = None
                    frame[column] = text
                elif kind == "vector":
                    frame[column] = list(values)
                else:
                    frame[column] = values
            yield pd.DataFrame(frame)
    except tf.errors.OpError as exc:
        raise MdrecError(f"cannot be read as TFRecord: {exc.message.splitlines()[0]}", path=str(path)) from None


# ---- reading with tf.data (training input) --------------------------------------------------------

def shard_files(path: str | Path) -> list[Path]:
    """The data files of ``path`` (a file, or a folder of shards, sorted)."""
    from mdrec.data.io import table_files

    return table_files(path)


def worker_files(files: Sequence[Path], index: int, count: int) -> list[Path]:
    """Worker ``index`` of ``count``'s files: every count-th file from its index."""
    if count > len(files):
        raise MdrecError(f"{count} input pipelines but only {len(files)} data file(s): sharding by file gives "
                         "each worker its own files", hint="write more shards with `mdrec data convert "
                         f"--shards {count}` (or a multiple of {count})")
    return list(files)[index::count]


_RULES = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
          "==": operator.eq, "!=": operator.ne}


def _label(values, spec: Spec):
    import tensorflow as tf

    rule = spec.label.rule()
    if rule is None:
        return values
    op, threshold = rule
    name = {v: k for k, v in _RULES.items()}[op]
    tf_op = {">=": tf.greater_equal, "<=": tf.less_equal, ">": tf.greater, "<": tf.less, "==": tf.equal,
             "!=": tf.not_equal}[name]
    return tf.cast(tf_op(values, tf.constant(threshold, tf.float32)), tf.float32)


def parse_fn(spec: Spec, schema: dict[str, tuple[str, int]] | None = None):
    """Serialized records [B] -> (model inputs as in ``input_signature``, labels float32 [B])."""
    import tensorflow as tf

    if spec.sequence is not None:
        raise MdrecError("sharded input cannot build behaviour sequences (they need each user's whole past)",
                         path=spec.source, hint="train in memory, or remove `sequence` from the spec")
    kinds = column_kinds(spec)
    if schema is not None:
        missing = [c for c in kinds if c not in schema]
        if missing:
            raise MdrecError(f"the shards lack column(s) {', '.join(map(repr, missing))} the spec reads",
                             hint="convert the log again with this spec (`mdrec data convert`)")
    description = _feature_description(kinds)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, description)
        inputs = {f.name: parsed[f.column] for f in spec.features}
        if spec.domain.column:
            inputs[spec.domain.column] = parsed[spec.domain.column]
        return inputs, _label(parsed[spec.label.column], spec)

    return parse


BLOCK = 64  # records read, shuffled and moved through tf.data together


def tfrecord_dataset(files: Sequence[str | Path], spec: Spec, batch_size: int, *, shuffle_buffer: int = 0,
                     seed: int = 0, repeat: bool = False, shard: tuple | None = None,
                     drop_remainder: bool = False, cycle_length: int = 4):
    """Batches (inputs, labels) from TFRecord shards, in pure TensorFlow.

    ``shard=(count, index)`` keeps every count-th file from ``index`` (a tensor index works: it
    is resolved where the dataset runs). With ``shuffle_buffer`` (rows) the file order and the
    rows are shuffled, seeded by ``seed`` and reshuffled on every repetition: blocks of
    ``BLOCK`` consecutive records are shuffled, not single records (a per-record shuffle costs
    tf.data most of its time), which is as good as a row shuffle on shards ``convert`` wrote,
    since their rows are already in a random order.
    """
    import mdrec  # noqa: F401
    import tensorflow as tf

    files = [str(f) for f in files]
    if not files:
        raise MdrecError("no TFRecord shards to read")
    parse = parse_fn(spec)
    compression = _compression(files[0])
    names = tf.data.Dataset.from_tensor_slices(files)
    if shard is not None:
        names = names.shard(shard[0], shard[1])
    if shuffle_buffer:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        names = names.repeat()
    blocks = names.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression).batch(BLOCK),
                              cycle_length=max(1, min(cycle_length, len(files))),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle_buffer:
        blocks = blocks.shuffle(max(1, shuffle_buffer // BLOCK), seed=seed, reshuffle_each_iteration=True)
    batches = blocks.rebatch(batch_size, drop_remainder=drop_remainder)
    return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def python_dataset(files: Sequence[str | Path], spec: Spec, batch_size: int, *, shuffle_buffer: int = 0,
                   seed: int = 0, repeat: bool = False, known_domains: Sequence[str] | None = None,
                   drop_remainder: bool = False, chunk_rows: int = 16384):
    """Batches from any table shards (Parquet, CSV, TFRecord) read through pandas, file by file.

    For processes that run Python (single process, mirrored, multi-worker). Batches are cut in
    numpy, not row by row in tf.data; with ``shuffle_buffer`` the files are read in a seeded
    order that changes with every repetition and each chunk's rows are permuted.
    """
    import mdrec  # noqa: F401
    import tensorflow as tf

    from mdrec.data.log import iter_logs
    from mdrec.data.pipeline import labels_of, model_inputs
    from mdrec.data.signature import input_signature

    if spec.sequence is not None:
        parse_fn(spec)  # raises the sequence error
    files = [str(f) for f in files]

    def generate():
        rounds = 0
        pending: tuple[dict, np.ndarray] | None = None
        while True:
            rng = np.random.default_rng([seed, rounds])
            order = rng.permutation(len(files)) if shuffle_buffer else np.arange(len(files))
            for i in order:
                for part in iter_logs(files[i], spec, chunk_rows, known_domains=known_domains):
                    inputs, labels = model_inputs(part, spec), labels_of(part)
                    if pending is not None:  # the previous chunk's last partial batch comes first
                        inputs = {k: np.concatenate([pending[0][k], v]) for k, v in inputs.items()}
                        labels = np.concatenate([pending[1], labels])
                    index = rng.permutation(len(labels)) if shuffle_buffer else np.arange(len(labels))
                    full = len(index) // batch_size * batch_size
                    for start in range(0, full, batch_size):
                        rows = index[start:start + batch_size]
                        yield {k: v[rows] for k, v in inputs.items()}, labels[rows]
                    rest = np.sort(index[full:])
                    pending = ({k: v[rest] for k, v in inputs.items()}, labels[rest]) if len(rest) else None
            rounds += 1
            if not repeat:
                break
        if pending is not None and not drop_remainder:
            yield pending

    signature = input_signature(spec)
    output_signature = ({name: tf.TensorSpec(s.shape, s.dtype) for name, s in signature.items()},
                        tf.TensorSpec([None], tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=output_signature).prefetch(tf.data.AUTOTUNE)


def sharded_dataset(files: Sequence[str | Path], spec: Spec, batch_size: int, **kwargs):
    """:func:`tfrecord_dataset` when every file is a TFRecord shard, else :func:`python_dataset`."""
    if files and all(is_tfrecord(Path(f)) for f in files):
        kwargs.pop("known_domains", None)
        kwargs.pop("chunk_rows", None)
        return tfrecord_dataset(files, spec, batch_size, **kwargs)
    kwargs.pop("shard", None)
    kwargs.pop("cycle_length", None)
    return python_dataset(files, spec, batch_size, **kwargs)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))
