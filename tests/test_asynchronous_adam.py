"""AsynchronousAdam: tf_keras' Adam step wherever the state is consistent, no step for an entry whose
second moment is 0 while its first is not (what a parameter-server worker reads when another
worker's update is half done)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mdrec.training.asynchronous_adam import AsynchronousAdam

RATE = 0.01
# The first step (t = 1): alpha = rate * sqrt(1 - 0.999) / (1 - 0.9) = 0.0031623
ALPHA = RATE * np.sqrt(1 - 0.999) / (1 - 0.9)


def _optimizer_at(kind, m, v):
    """An optimizer over a [3] variable of ones whose slots hold m and v."""
    variable = tf.Variable(np.ones(3, np.float32))
    optimizer = kind(RATE)
    optimizer.build([variable])
    optimizer._momentums[0].assign(np.asarray(m, np.float32))
    optimizer._velocities[0].assign(np.asarray(v, np.float32))
    return optimizer, variable


# Entry 0: a consistent state; entry 1: m from a gradient whose v has not landed yet; entry 2: untouched.
TORN = ([0.1, 0.008, 0.0], [0.01, 0.0, 0.0])


def test_a_consistent_entry_takes_adams_step_and_a_torn_one_none():
    gradient = tf.constant([0.0, 0.0, 0.0])
    optimizer, variable = _optimizer_at(AsynchronousAdam, *TORN)
    optimizer.apply_gradients([(gradient, variable)])
    # Entry 0: m = 0.9 * 0.1 = 0.09, v = 0.999 * 0.01 = 0.00999, step = alpha * 0.09 / (sqrt(v) + 1e-7)
    expected_0 = 1 - ALPHA * 0.09 / (np.sqrt(0.00999) + 1e-7)
    np.testing.assert_allclose(variable.numpy(), [expected_0, 1.0, 1.0], rtol=1e-6)

    # tf_keras' Adam on the same state: the same entry 0, and entry 1 thrown by ~alpha * 0.0072 / 1e-7 = 228.
    plain, plain_variable = _optimizer_at(tf_keras.optimizers.Adam, *TORN)
    plain.apply_gradients([(gradient, plain_variable)])
    np.testing.assert_allclose(plain_variable.numpy()[0], expected_0, rtol=1e-6)
    assert plain_variable.numpy()[1] < -200


def test_sparse_gradients_take_the_same_steps_as_tf_keras_adam_from_a_consistent_state():
    table = np.asarray([[0.5], [-0.2], [0.1], [0.3]], np.float32)
    rows = tf.constant([0, 2, 2])  # row 2 twice, rows 1 and 3 never: their v stays 0
    ours, theirs = tf.Variable(table), tf.Variable(table)
    steps = [(AsynchronousAdam(RATE), ours), (tf_keras.optimizers.Adam(RATE), theirs)]
    for step in range(3):
        for optimizer, variable in steps:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(variable, rows) * (step + 1.0))
            gradient = tape.gradient(loss, variable)
            assert isinstance(gradient, tf.IndexedSlices)  # the scatter path
            optimizer.apply_gradients([(gradient, variable)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ours.numpy()[[1, 3]], table[[1, 3]])  # never touched, never moved
    assert ours.numpy()[0, 0] < table[0, 0]  # touched rows did move


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="amsgrad"):
        AsynchronousAdam(RATE, amsgrad=True)
