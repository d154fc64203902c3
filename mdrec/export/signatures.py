"""Serving signatures with explicit, stable input names (never auto-named ``input_1``)."""
from __future__ import annotations

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.transform import Transform
from mdrec.layers.domain import fused_inference
from mdrec.data.signature import input_signature
from mdrec.spec import FeatureSpec, Spec


# A numeric value this many training standard deviations from the training mean (after the
# feature's transform) is refused: 1e30 for a price would otherwise saturate the model to 0 or 1.
OUT_OF_RANGE_STDS = 1000.0


def ctr_signature(model: tf_keras.Model, spec: Spec, transform: Transform | None = None
                  ) -> tf.types.experimental.ConcreteFunction:
    """Raw feature columns by spec name -> {"probability": [B], "logit": [B]}.

    A request whose inputs disagree on the batch size, that names a domain the model was not
    trained on, or holds a numeric value training would refuse (see :func:`check_request`), fails
    with a message naming the input (instead of a garbage score or an error from deep inside the
    graph). Unknown ids are not errors: they map to the OOV buckets.
    """
    signature = input_signature(spec)

    @tf.function(input_signature=[signature])
    def serve(features):
        with tf.control_dependencies(check_request(features, spec, transform)):
            logit = tf.identity(model(features, training=False))
        return {"probability": tf.sigmoid(logit), "logit": logit}

    # The exported weights cannot change: fuse STAR's once and serve them without a staleness check.
    prepare = getattr(model, "prepare_inference", None)
    if prepare is not None:
        prepare()
    with fused_inference():
        return serve.get_concrete_function()


def check_request(features: dict[str, tf.Tensor], spec: Spec, transform: Transform | None = None
                  ) -> list[tf.Operation]:
    """In-graph checks of a request: one batch size for every input, only known domains, and the
    numeric values training accepts: finite (NaN only where the feature is nullable: it then
    means missing, as in training), not negative under ``log1p``, and (with ``transform``) within
    OUT_OF_RANGE_STDS training standard deviations of the training mean."""
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
    # A saved signature does not enforce its own [None, width] shapes: a wider vector or history
    # would reach the graph (an anonymous MatMul error, or a silently different score).
    widths = {f.name: f.dim for f in spec.features if f.type == "dense_vector"}
    if spec.sequence:
        widths[spec.sequence.name] = spec.sequence.max_length
    checks += [tf.debugging.assert_equal(tf.shape(features[name])[1], width,
                                         message=f"input {name} needs {width} values per row")
               for name, width in widths.items() if name in features]
    checks += [_check_numeric(feature, features[feature.name], transform)
               for feature in spec.features if feature.name in features
               and feature.type in ("numeric", "dense_vector")]
    return [check for check in checks if check is not None]  # a check known to pass needs no op


def _check_numeric(feature: FeatureSpec, value: tf.Tensor, transform: Transform | None) -> tf.Operation:
    missing = tf.math.is_nan(value)
    bad = tf.math.is_inf(value) | (missing if feature.type == "dense_vector" or not feature.nullable
                                   else tf.zeros_like(missing))
    rule = "finite" + ("" if feature.nullable and feature.type == "numeric" else ", not NaN")
    if feature.transform == "log1p":
        bad |= value < 0
        rule += ", not negative (log1p)"
    stats = transform.numeric.get(feature.name) if transform is not None and feature.type == "numeric" else None
    if stats is not None:
        x = tf.math.log1p(tf.maximum(value, 0.0)) if feature.transform == "log1p" else value
        bad |= tf.abs(x - stats["mean"]) > OUT_OF_RANGE_STDS * stats["std"]
        rule += f", within {OUT_OF_RANGE_STDS:g} training std of the training mean"
    return tf.debugging.Assert(
        ~tf.reduce_any(bad),
        [f"input {feature.name} needs values that are {rule}; got", tf.boolean_mask(value, bad)], summarize=5)
