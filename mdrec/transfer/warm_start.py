"""ID warm start: a target model's embedding tables start from a trained run's, row by row by ID.

The two runs may have different vocabularies (another line's users and items, in another order).
``tf_keras.utils.warmstart_embedding_matrix`` maps rows by key: an ID in both vocabularies gets the
source row, an ID only the target knows keeps its fresh initial row. Tables are matched by name
(``user_id``, ``item_id``, ``category``...) and must have the same width.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.spec import Spec
from mdrec.training.run import RunDir


def _table_key(table: str) -> str:
    return f"model/encoder/tables/{table}/embeddings/.ATTRIBUTES/VARIABLE_VALUE"


def _row_keys(vocabulary: list[str], special_rows: int) -> list[str]:
    # Row order of an mdrec table: mask "", the OOV bucket(s), then the vocabulary. The special
    # rows get names no real ID can have, so they map onto each other (the OOV row is copied too).
    return [f"\x00<special {i}>" for i in range(special_rows)] + list(vocabulary)


def _special_rows(spec, table: str, text: bool) -> int:
    if text:
        return 2
    owner = next(f for f in spec.features if f.is_categorical and f.table == table)
    return 1 + owner.oov_buckets


def source_tables(source_run: str | Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """table name -> (row keys, trained matrix) of a finished CTR or two-tower run."""
    run = RunDir(source_run).require()
    if not run.best.exists():
        raise MdrecError("the warm-start run has no trained weights (best/ is missing)", path=str(run.path),
                         hint="finish training it first")
    spec = run.load_spec()
    transform = Transform.load(run.transform_path)
    reader = tf.train.load_checkpoint(str(run.best / "weights"))
    shapes = dict(tf.train.list_variables(str(run.best / "weights")))
    out = {}
    for table, vocabulary in list(transform.vocabularies.items()) + list(transform.text.items()):
        key = _table_key(table)
        if key not in shapes:
            continue
        text = table in transform.text and table not in transform.vocabularies
        out[table] = (_row_keys(vocabulary, _special_rows(spec, table, text)), reader.get_tensor(key))
    if not out:
        raise MdrecError("the warm-start run holds no shared embedding tables (a 'separate' model keeps one "
                         "set per line)", path=str(run.path), hint="warm start from a star, shared_bottom, "
                         "mmoe or two_tower run")
    return out


def warm_start(model: tf_keras.Model, source_run: str | Path) -> dict[str, dict]:
    """Copy ``source_run``'s rows into ``model``'s built embedding tables for every shared ID.

    Returns table -> {"copied": rows whose ID the source knew, "fresh": rows it did not}.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "tables"):
        raise MdrecError("ID warm start needs a model with one shared feature encoder", path=str(source_run),
                         hint="use star, shared_bottom, mmoe or two_tower")
    source = source_tables(source_run)
    report = {}
    for table, layer in encoder.tables.items():
        if table not in source or not layer.built:
            continue  # a table the model never reads (e.g. item_id in content mode) has no rows
        base_keys, base = source[table]
        current = layer.embeddings.numpy()
        if base.shape[1] != current.shape[1]:
            raise MdrecError(f"table '{table}' is {base.shape[1]} wide in the warm-start run and "
                             f"{current.shape[1]} in this model", path=str(source_run),
                             hint="give the feature the same embedding_dim in both specs")
        lookup = encoder.lookups[table]
        text = table in encoder.transform.text and table not in encoder.transform.vocabularies
        vocabulary = encoder.transform.text[table] if text else encoder.transform.vocabularies[table]
        new_keys = _row_keys(vocabulary, _special_rows(encoder.spec, table, text))
        if len(new_keys) != int(lookup.vocabulary_size()):
            continue  # an empty vocabulary's placeholder table: nothing to copy
        matrix = tf_keras.utils.warmstart_embedding_matrix(
            base_vocabulary=tf.constant(base_keys), new_vocabulary=tf.constant(new_keys),
            base_embeddings=tf.constant(base), new_embeddings_initializer=tf_keras.initializers.Constant(current))
        layer.embeddings.assign(matrix)
        known = set(base_keys)
        copied = sum(1 for k in new_keys if k in known)
        report[table] = {"copied": copied, "fresh": len(new_keys) - copied}
    return report


def with_source_users(transform: Transform, spec: Spec, source_run: str | Path) -> tuple[Transform, int]:
    """``transform`` with the user id's vocabulary extended by the users only ``source_run``
    knows (appended after the target's own, most frequent first), and how many were added.

    Without them a user the target line has never seen falls into the OOV bucket, and the warm
    start has no row to give them: the cold-start case that ID transfer exists for. With them
    their row starts as the source line's trained one, as the warm users' rows do, against which
    the target line's items are learned.
    """
    table = spec.user_id.table
    if spec.user_id.hash_buckets or table not in transform.vocabularies:
        return transform, 0  # hashed ids have no vocabulary: a shared bucket already carries them
    source = Transform.load(RunDir(source_run).require().transform_path)
    known = set(transform.vocabularies[table])
    added = [key for key in source.vocabularies.get(table, []) if key not in known]
    return replace(transform, vocabularies={**transform.vocabularies, table: transform.vocabularies[table] + added}), \
        len(added)
