"""Multi-head self-attention over a behaviour sequence, with seeded (XLA-safe) dropout.

    attention = SelfAttention(dim=64, heads=2, dropout=0.2)
    y = attention(x, mask=causal, training=True)    # x [B, L, dim], mask bool [B or 1, L, L] -> [B, L, dim]

y = concat_h(softmax(q_h k_h^T / sqrt(dim / heads) + (0 where mask else -1e9)) v_h) W_o, with
q = x W_q and [k, v] = memory W_kv (memory = x unless given). ``mask[b, i, j]`` says whether query i may read key j;
a query that may read no key gets the mean of the values instead of NaN (every row of the softmax is
finite). Dropout on the attention probabilities draws from a ``tf.random.Generator`` (Keras'
stateful generator), so a compiled (XLA) step stays seeded (its state is not in checkpoints).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

_NEG = -1e9  # an excluded key's logit: exp() underflows to 0 after the max is subtracted
# BERT's initializer, N(0, 0.02^2) truncated, as a Keras identifier (what get_config stores).
BERT_INITIALIZER: dict[str, Any] = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}
Initializer = str | dict[str, Any]  # a Keras initializer identifier: "glorot_uniform" or {"class_name", "config"}


def fresh_initializer(identifier: Initializer) -> tf_keras.initializers.Initializer:
    """A new initializer instance per weight (a shared unseeded instance would give every weight
    the same values)."""
    return tf_keras.initializers.get(copy.deepcopy(identifier))


def small_normal() -> tf_keras.initializers.Initializer:
    """BERT's initializer (:data:`BERT_INITIALIZER`), a fresh instance."""
    return fresh_initializer(BERT_INITIALIZER)


def seeded_dropout(rate: float, **kwargs: Any) -> tf_keras.layers.Dropout:
    """A Dropout layer on a tf.random.Generator (seeded by the global seed, XLA-compatible)."""
    return tf_keras.layers.Dropout(rate, force_generator=True, **kwargs)


class SelfAttention(tf_keras.layers.Layer):
    """call(x [B, L, dim], mask bool broadcastable to [B, L, L] or None, training, memory=None)
    -> [B, L, dim]; with ``memory`` [B, L, dim] the keys and values are projected from it and the
    queries from x (SASRec's block reads normalised queries against raw keys).
    ``kernel_initializer``: of the query, key/value and output projections (BERT's by default)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0,
                 kernel_initializer: Initializer = BERT_INITIALIZER, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(dim) % int(heads):
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.dropout = int(dim), int(heads), float(dropout)
        self.kernel_initializer = copy.deepcopy(kernel_initializer)
        self.head_dim = self.dim // self.heads
        self.query = tf_keras.layers.Dense(self.dim, kernel_initializer=fresh_initializer(kernel_initializer),
                                           name="query")
        self.key_value = tf_keras.layers.Dense(2 * self.dim, kernel_initializer=fresh_initializer(kernel_initializer),
                                               name="key_value")
        self.output_projection = tf_keras.layers.Dense(self.dim, kernel_initializer=fresh_initializer(kernel_initializer),
                                                       name="output")
        self.drop = seeded_dropout(self.dropout)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.query.build(input_shape)
        self.key_value.build(input_shape)
        self.output_projection.build(tuple(input_shape[:-1]) + (self.dim,))
        super().build(input_shape)

    def _heads(self, x: tf.Tensor, parts: int) -> tf.Tensor:
        """[B, L, parts * dim] -> [parts, B, H, L, head_dim]."""
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, [batch, length, parts, self.heads, self.head_dim]), [2, 0, 3, 1, 4])

    def call(self, x: tf.Tensor, mask: tf.Tensor | None = None, training: bool = False,
             memory: tf.Tensor | None = None) -> tf.Tensor:
        q = self._heads(self.query(x), 1)[0]
        kv = self._heads(self.key_value(x if memory is None else memory), 2)
        k, v = kv[0], kv[1]
        logits = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_dim))  # [B, H, L, L]
        if mask is not None:
            logits = tf.where(tf.cast(mask, tf.bool)[:, None], logits, _NEG)
        probs = self.drop(tf.nn.softmax(logits, axis=-1), training=training)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])  # [B, L, H, head_dim]
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        return self.output_projection(tf.reshape(context, [batch, length, self.dim]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "dropout": self.dropout,
                "kernel_initializer": copy.deepcopy(self.kernel_initializer)}
