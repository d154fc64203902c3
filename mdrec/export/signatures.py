"""Serving signatures with explicit, stable input names (never auto-named ``input_1``)."""
from __future__ import annotations

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.layers.features import input_signature
from mdrec.spec import Spec


def ctr_signature(model: tf_keras.Model, spec: Spec) -> tf.types.experimental.ConcreteFunction:
    """Raw feature columns by spec name -> {"probability": [B], "logit": [B]}.

    A request whose inputs disagree on the batch size, or that names a domain the model was not
    trained on, fails with a message saying so (instead of an error from deep inside the graph).
    Unknown ids are not errors: they map to the OOV buckets.
    """
    signature = input_signature(spec)

    @tf.function(input_signature=[signature])
    def serve(features):
        with tf.control_dependencies(check_request(features, spec)):
            logit = tf.identity(model(features, training=False))
        return {"probability": tf.sigmoid(logit), "logit": logit}

    return serve.get_concrete_function()


def check_request(features: dict[str, tf.Tensor], spec: Spec) -> list[tf.Operation]:
    """In-graph checks of a request: one batch size for every input, and only known domains."""
    names = sorted(features)
    batch = tf.shape(features[names[0]])[0]
    checks = [tf.debugging.assert_equal(
        tf.shape(features[name])[0], batch,
        message=f"input '{name}' has a different number of rows than '{names[0]}': every input "
                "needs one value per row")
        for name in names[1:]]
    if spec.domain.column and spec.domain.values:
        domain = features[spec.domain.column]
        known = tf.constant(list(spec.domain.values))
        is_known = tf.reduce_any(tf.equal(domain[:, None], known[None, :]), axis=1)
        checks.append(tf.debugging.Assert(
            tf.reduce_all(is_known),
            [f"unknown value in '{spec.domain.column}': the model serves the domains "
             f"{', '.join(spec.domain.values)} only; got", tf.boolean_mask(domain, ~is_known)],
            summarize=5))
    return [check for check in checks if check is not None]  # a check known to pass needs no op
