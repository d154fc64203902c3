"""The TensorBoard embedding projector of a run: ID embeddings at the best checkpoint, with metadata.

Written to RUN/tensorboard/embeddings/ (after the best weights are restored):

  embeddings.ckpt-1.*        one checkpoint variable per table ("item_id", "user_id") [rows, dim]
  <table>.tsv                one row per embedding row: id, line (the line with most training
                             rows of the id), training_clicks
  projector_config.pbtxt     ties each variable to its metadata
  events.*                   a text note (TensorBoard lists a folder as a run only with events)

Only rows of the training vocabulary are shown (no mask or out-of-vocabulary rows), at most
``MAX_ROWS`` per table, most frequent ids first (the projector slows down beyond that).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

import mdrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.data.transform import lookup_keys
from mdrec.fileio import atomic_directory
from mdrec.spec import Spec
from mdrec.training.board import FOLDER

MAX_ROWS = 50_000
SUBFOLDER = "embeddings"
METADATA_COLUMNS = ("id", "line", "training_clicks")


@dataclass
class EmbeddingRows:
    """One table for the projector: ``vectors`` float32 [rows, dim] and ``metadata`` with
    METADATA_COLUMNS, one row per vector (same order)."""

    name: str
    vectors: np.ndarray
    metadata: pd.DataFrame


class IdCounts:
    """Training rows per (id, line) and clicks per id, added chunk by chunk (bounded memory when
    the log is streamed); ``metadata(ids)`` gives the projector's columns."""

    def __init__(self) -> None:
        self.rows: pd.Series | None = None    # (id, line) -> rows
        self.clicks: pd.Series | None = None  # id -> clicks

    def add(self, ids: np.ndarray, lines: np.ndarray, labels: np.ndarray) -> None:
        part = pd.DataFrame({"id": ids, "line": lines, "click": labels > 0})
        rows, clicks = part.groupby(["id", "line"]).size(), part.groupby("id")["click"].sum()
        self.rows = rows if self.rows is None else self.rows.add(rows, fill_value=0)
        self.clicks = clicks if self.clicks is None else self.clicks.add(clicks, fill_value=0)

    def metadata(self, ids: list[str]) -> pd.DataFrame:
        """id, line (the line with most training rows of the id; ties: first in line order),
        training_clicks; one row per id of ``ids``."""
        frame = pd.DataFrame({"id": ids, "line": "", "training_clicks": 0})
        if self.rows is not None and len(self.rows):
            top = self.rows.sort_values(ascending=False, kind="stable").reset_index().drop_duplicates("id")
            frame["line"] = frame["id"].map(top.set_index("id")["line"]).fillna("").astype(str)
            frame["training_clicks"] = frame["id"].map(self.clicks).fillna(0).astype(np.int64)
        return frame


def model_encoders(model) -> dict[str, object]:
    """The feature encoders whose ID tables a model reads: {"": encoder} for models with one shared
    encoder, {"@<line>": encoder} per line for ``separate`` (one tower, and tables, per line)."""
    if getattr(model, "encoder", None) is not None:
        return {"": model.encoder}
    towers = getattr(model, "towers", [])
    return {f"@{line}": tower.encoder for line, tower in zip(towers[0].encoder.domains, towers)} if towers else {}


def encoder_tables(encoders: dict[str, object], spec: Spec, train: Iterable[Log]) -> list[EmbeddingRows]:
    """The item and user ID tables of :class:`mdrec.layers.features.FeatureEncoder` s (``encoders``:
    name suffix -> encoder, see :func:`model_encoders`), their metadata counted over the training
    log (``train``: the log, or its chunks when streamed; one pass). Hashed tables have no ids to
    show and are skipped, as are tables the model never reads."""
    def shown(encoder, f) -> bool:
        # A table the model never reads (the item ID under a content-only item encoder) has no weights.
        return (not f.hash_buckets and f.table in encoder.tables and encoder.tables[f.table].built
                and bool(encoder.transform.vocabulary(f)))

    tables = [(suffix, encoder, f) for suffix, encoder in encoders.items() for f in (spec.item_id, spec.user_id)
              if shown(encoder, f)]
    features = {f.name: f for _, _, f in tables}
    counts = {name: IdCounts() for name in features}
    for log in train if features else ():
        lines = log.frame[DOMAIN].to_numpy(dtype=object)
        for name, f in features.items():
            keys = lookup_keys(log.frame[f.name].to_numpy(dtype=object), f, lines)
            counts[name].add(keys, lines, log.frame[LABEL].to_numpy())
    out = []
    for suffix, encoder, feature in tables:
        full = encoder.transform.vocabulary(feature)
        vocabulary = list(full[:MAX_ROWS])
        # StringLookup rows: the mask, the OOV buckets, then the vocabulary in order.
        first = encoder.lookups[feature.table].vocabulary_size() - len(full)
        vectors = encoder.tables[feature.table].embeddings.numpy()[first:first + len(vocabulary)]
        out.append(EmbeddingRows(feature.name + suffix, vectors, counts[feature.name].metadata(vocabulary)))
    return out


def write_projector(run_path: str | Path, tables: list[EmbeddingRows]) -> Path | None:
    """Write the projector folder atomically (replacing an earlier one); None without tables."""
    if not tables:
        return None
    from tensorboard.plugins import projector

    folder = Path(run_path) / FOLDER / SUBFOLDER
    with atomic_directory(folder) as tmp:
        variables = {t.name: tf.Variable(np.asarray(t.vectors, np.float32), name=t.name) for t in tables}
        # A relative checkpoint path, so the run folder can move.
        tf.train.Checkpoint(**variables).save(str(tmp / "embeddings.ckpt"))
        config = projector.ProjectorConfig()
        for t in tables:
            t.metadata.loc[:, list(METADATA_COLUMNS)].to_csv(tmp / f"{t.name}.tsv", sep="\t", index=False)
            embedding = config.embeddings.add()
            embedding.tensor_name = f"{t.name}/.ATTRIBUTES/VARIABLE_VALUE"
            embedding.metadata_path = f"{t.name}.tsv"
        (tmp / "projector_config.pbtxt").write_text(str(config))
        writer = tf.summary.create_file_writer(str(tmp))
        with writer.as_default(step=0):
            tf.summary.text("embeddings", "; ".join(f"{t.name}: {len(t.vectors):,} rows x {t.vectors.shape[1]} "
                                                    "(id, line, training_clicks)" for t in tables))
        writer.close()
    return folder
