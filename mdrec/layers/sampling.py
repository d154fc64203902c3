"""Streaming estimate of how often each candidate appears in training batches.

In-batch softmax samples negatives in proportion to popularity; the logQ correction subtracts
log(sampling probability) from each candidate's logit. When the frequencies are not known up front
(a stream, a catalogue that changes), Yi et al. (RecSys 2019, "Sampling-bias-corrected neural
modeling", Algorithm 2) estimate them online from the number of steps between occurrences.
"""
from __future__ import annotations

from typing import Any

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras


class StreamingFrequencyEstimator(tf_keras.layers.Layer):
    """Per id: gap ← (1 − α)·gap + α·(t − last seen step); probability ≈ 1 / gap.

    call(ids int [B], training) -> float32 [B] estimated probability that an id shows up in a
    batch. Updates its state only when training. Ids are hashed (mod ``buckets``) into the two
    arrays; with ``buckets`` at least the id range there are no collisions.
    """

    def __init__(self, buckets: int, alpha: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if buckets < 1:
            raise ValueError(f"buckets must be positive, got {buckets}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.buckets = int(buckets)
        self.alpha = float(alpha)

    def build(self, input_shape: tf.TensorShape) -> None:
        self.step = self.add_weight("step", shape=[], dtype=tf.float32, initializer="zeros", trainable=False)
        self.last_seen = self.add_weight("last_seen", shape=[self.buckets], dtype=tf.float32,
                                         initializer="zeros", trainable=False)
        self.gap = self.add_weight("gap", shape=[self.buckets], dtype=tf.float32, initializer="zeros",
                                   trainable=False)
        super().build(input_shape)

    def call(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        slots = tf.math.floormod(tf.cast(ids, tf.int64), self.buckets)[:, None]
        if training:
            t = self.step.assign_add(1.0)
            last = tf.gather_nd(self.last_seen, slots)
            gap = tf.gather_nd(self.gap, slots)
            # An id seen for the first time has waited t steps so far.
            new_gap = tf.where(last > 0, (1.0 - self.alpha) * gap + self.alpha * (t - last), t)
            self.gap.scatter_nd_update(slots, new_gap)
            self.last_seen.scatter_nd_update(slots, tf.fill(tf.shape(last), t))
        return 1.0 / tf.maximum(tf.gather_nd(self.gap, slots), 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "buckets": self.buckets, "alpha": self.alpha}
