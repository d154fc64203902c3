"""Sharded logs: ``mdrec data convert`` writes them, tf.data reads them one file shard per worker.

A converted log is a folder of N shard files (TFRecord or Parquet) plus ``manifest.json``. Rows
are validated against the spec while converting (the same checks and messages as ``load_log``),
then written in canonical form, one record per row, keyed by the spec's *column* names, so the
folder is again a log for the same spec (``load_log``, ``iter_logs``, ``mdrec spec check`` and
``mdrec train`` read it like a CSV) and a parser needs no Python. The pieces, by job:

- :mod:`mdrec.data.shard_format`: the record layout, the manifest, which files are TFRecord;
- :mod:`mdrec.data.shard_convert`: :func:`convert`, the writing;
- :mod:`mdrec.data.tfrecord`: TFRecord encoding and decoding (pandas chunks, parsing in the graph);
- this module: listing a log's files, a worker's share of them, and reading them as tf.data.

Reading: :func:`tfrecord_dataset` is pure TensorFlow (``TFRecordDataset`` + ``parse_example``), so
it runs on parameter-server workers, which execute graphs and cannot call back into Python;
:func:`sharded_dataset` also reads Parquet / CSV shards through Python (single process,
mirrored, multi-worker). Both take a worker's share of the files (``shard=(count, index)``; the
index may be a tensor, e.g. ``tf.distribute.coordinator.experimental_get_current_worker_index()``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from mdrec.data.shard_format import is_tfrecord
from mdrec.data.tfrecord import parse_fn, tfrecord_dataset
from mdrec.errors import MdrecError
from mdrec.spec import Spec


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
    """Batches in an epoch of ``rows`` rows (a last partial batch counts; at least 1)."""
    return max(1, math.ceil(rows / batch_size))
