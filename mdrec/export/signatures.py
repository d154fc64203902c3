"""Serving signatures with explicit, stable input names (never auto-named ``input_1``)."""
from __future__ import annotations

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.layers.features import input_signature
from mdrec.spec import Spec


def ctr_signature(model: tf_keras.Model, spec: Spec) -> tf.types.experimental.ConcreteFunction:
    """Raw feature columns by spec name -> {"probability": [B], "logit": [B]}."""
    signature = input_signature(spec)

    @tf.function(input_signature=[signature])
    def serve(features):
        logit = model(features, training=False)
        return {"probability": tf.sigmoid(logit), "logit": logit}

    return serve.get_concrete_function()
