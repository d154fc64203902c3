"""What a converted log's folder holds: shard files of one record layout, and ``manifest.json``.

The layout is keyed by the spec's *column* names, one record per row, so the folder is again a log
for the same spec and a parser needs no Python:

- label column: float (the raw value, e.g. a rating; the spec's ``positive_if`` still applies);
- domain and categorical / list / text columns: bytes, "" where a value is missing;
- numeric columns: float (NaN where missing; float32 in TFRecord, float64 in Parquet);
- dense_vector columns: ``dim`` floats (zeros where missing, as in a loaded log);
- the time column: int64 unix seconds.

Writing is in :mod:`mdrec.data.shard_convert`, TFRecord encoding and decoding in
:mod:`mdrec.data.tfrecord`, listing and reading the files in :mod:`mdrec.data.shards`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.columns import DOMAIN, TIME
from mdrec.errors import MdrecError
from mdrec.spec import Spec

FORMATS = ("tfrecord", "parquet")
COMPRESSIONS = ("none", "gzip")
MANIFEST = "manifest.json"
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")


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


def canonical_columns(log, raw_label: pd.Series, spec: Spec) -> dict[str, np.ndarray]:
    """A validated chunk as column -> canonical values (n,) or (n, dim) (see the module docstring).

    log: the chunk canonicalized by ``mdrec.data.log.canonicalize``; raw_label: the chunk's label
    column as read (n,), since the log keeps only the 0/1 label and a shard keeps the raw value.
    """
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


def is_tfrecord(path: Path) -> bool:
    """Whether ``path`` is a TFRecord shard by its suffix (``.tfrecord``, ``.tfr``..., optionally ``.gz``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TFRECORD_SUFFIXES
