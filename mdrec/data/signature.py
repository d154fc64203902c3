"""A spec's raw model inputs as TensorSpecs: the one naming that training, serving signatures and
sharded input share."""
from __future__ import annotations

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)

import tensorflow as tf

from mdrec.spec import Spec


def input_signature(spec: Spec) -> dict[str, tf.TensorSpec]:
    """The model's raw inputs, named as in the spec (stable names for serving signatures).

    numeric: float32 [B]; dense_vector: float32 [B, dim]; every other feature, the line column and
    the behaviour history: tf.string [B] ([B, max_length] for the history)."""
    sig: dict[str, tf.TensorSpec] = {}
    for feature in spec.features:
        if feature.type == "numeric":
            sig[feature.name] = tf.TensorSpec([None], tf.float32, name=feature.name)
        elif feature.type == "dense_vector":
            sig[feature.name] = tf.TensorSpec([None, feature.dim], tf.float32, name=feature.name)
        else:
            sig[feature.name] = tf.TensorSpec([None], tf.string, name=feature.name)
    if spec.domain.column:
        sig[spec.domain.column] = tf.TensorSpec([None], tf.string, name=spec.domain.column)
    if spec.sequence:
        sig[spec.sequence.name] = tf.TensorSpec([None, spec.sequence.max_length], tf.string,
                                                name=spec.sequence.name)
    return sig
