"""The user-encoder family's export: a pretraining run's encoder as a SavedModel for TF Serving.

Signatures (the item vocabulary and attribute tables are inside the graph; inputs are raw item ids,
oldest first, "" padding, and times int64 [B, max_length] when the run embeds time buckets):
  serving_default  items tf.string [B, max_length] -> user_embedding float32 [B, dim]: the
                   representation the next-item head scores (README: "the user vector")
  next_items       items tf.string [B, max_length] -> item_ids tf.string [B, k], scores float32
                   [B, k]: the k best next items by the head (user vector . item embedding + item
                   bias), the request's own items removed (a user is not offered what they clicked);
                   fewer candidates than k pad with "" and -inf
Unknown items map to the OOV row (a finite answer); a shorter request (L < max_length) gives the
same outputs as one padded to max_length, a longer one fails with a message saying to pass the
last max_length items; an empty batch returns empty outputs. Warmup requests are the run's own
stored user sequences; assets carry spec.yaml, config.json, metrics.json and vocabulary.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.models.user_encoder import ITEMS, SPECIAL_ROWS, UserEncoder
from mdrec.workflows.export.family import FamilyExport, warmup_batches

OUTPUT = "user_embedding"
NEXT_ITEMS = "next_items"
WARMUP_USERS = 256
DEFAULT_TOP_K = 100


def next_items(encoder: UserEncoder, inputs: dict[str, tf.Tensor], k: int) -> dict[str, tf.Tensor]:
    """Top-``k`` next items of raw sequences (see the module doc): {"item_ids", "scores"} [B, k]."""
    vectors = encoder(inputs, training=False)
    scores = encoder.item_scores(vectors)  # [B, V]
    rows = encoder.item_ids(inputs[ITEMS]) - SPECIAL_ROWS  # vocabulary index; padding and OOV < 0
    batch = tf.shape(rows)[0]
    where = tf.where(rows >= 0)  # [n, 2]: (request, position) of every known item
    flat = where[:, 0] * encoder.num_items + tf.cast(tf.gather_nd(rows, where), tf.int64)
    seen = tf.scatter_nd(flat[:, None], tf.ones_like(flat, tf.int32), [tf.cast(batch, tf.int64) * encoder.num_items])
    seen = tf.reshape(seen, [batch, encoder.num_items]) > 0
    scores = tf.where(seen, tf.constant(-np.inf, scores.dtype), scores)
    k = min(int(k), encoder.num_items)
    top = tf.math.top_k(scores, k=k)
    vocabulary = tf.constant(encoder.item_vocabulary or [""])
    ids = tf.gather(vocabulary, top.indices)
    return {"item_ids": tf.where(tf.math.is_finite(top.values), ids, ""), "scores": top.values}


def build_user_encoder(run_path: Path, top_k: int | None = None) -> FamilyExport:
    from mdrec.training.run import RunDir
    from mdrec.workflows.pretrained import load_pretrained, user_vectors

    run = RunDir(run_path).require()
    run.read_metrics()  # an unfinished run has no metrics to ship: fail before any work
    pretrained = load_pretrained(run_path)
    encoder = pretrained.encoder
    k = int(top_k or DEFAULT_TOP_K)

    @tf.function(input_signature=[encoder.input_signature()])
    def serve(inputs):
        return {OUTPUT: encoder(inputs, training=False)}

    @tf.function(input_signature=[encoder.input_signature()])
    def serve_next(inputs):
        return next_items(encoder, inputs, k)

    def reference_next(batch):
        vectors = user_vectors(encoder, batch)
        scores = vectors @ encoder.item_output_table().numpy().T + encoder.item_bias.numpy()
        return {"scores": np.sort(_without_seen(scores, batch[ITEMS], pretrained.item_vocabulary), axis=1)
                [:, ::-1][:, :min(k, encoder.num_items)]}

    module = tf.Module()
    module.encoder = encoder  # tracks the variables and the item lookup table the signatures capture
    users = sorted(u for u, items in pretrained.sequences.items() if items)[:WARMUP_USERS]
    config = pretrained.config
    warmup = warmup_batches(pretrained.inputs(users))
    return FamilyExport(
        module=module,
        signatures={"serving_default": serve.get_concrete_function(),
                    NEXT_ITEMS: serve_next.get_concrete_function()},
        warmup={"serving_default": warmup, NEXT_ITEMS: warmup},
        references={"serving_default": lambda batch: {OUTPUT: user_vectors(encoder, batch)},
                    NEXT_ITEMS: reference_next},
        assets={"spec.yaml": run.spec_path, "config.json": run.config_path, "metrics.json": run.metrics_path,
                "vocabulary.json": run.path / "vocabulary.json"},
        metadata={"model": config["model"], "objective": config["objective"],
                  "architecture": config["architecture"], "pooling": config["pooling"], "dim": encoder.dim,
                  "max_length": encoder.max_length, "items": len(pretrained.item_vocabulary), "top_k": k,
                  "warmup_source": str((run.path / "sequences.parquet").resolve()), "warmup_rows": len(users)},
    )


def _without_seen(scores: np.ndarray, items: np.ndarray, vocabulary: list[str]) -> np.ndarray:
    """Scores with each row's own items set to -inf (the in-process reference of ``next_items``)."""
    index = {item: i for i, item in enumerate(vocabulary)}
    out = np.array(scores, dtype=np.float64, copy=True)
    for row, history in enumerate(items):
        names = [i.decode() if isinstance(i, bytes) else str(i) for i in history]  # requests read back: bytes
        out[row, [index[name] for name in names if name in index]] = -np.inf
    return out
