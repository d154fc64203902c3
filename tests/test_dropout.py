"""ByteDropout: the rate rounded to 1/256, kept values scaled so the mean is unchanged, the mask the
gradient passes through, identity outside training, seeded runs that reproduce, config round trip."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mdrec.layers.dropout import ByteDropout, byte_threshold
from mdrec.layers.mlp import MLP


@pytest.mark.parametrize("rate, threshold", [(0.0, 0), (0.1, 26), (0.5, 128), (0.001, 1), (0.999, 255)])
def test_the_rate_rounds_to_a_byte_threshold(rate, threshold):
    # 0.1 * 256 = 25.6 -> 26; 0.001 * 256 rounds to 0 but stays on (1); 0.999 * 256 = 255.7 -> 255
    assert byte_threshold(rate) == threshold


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_a_rate_outside_0_1_is_refused(rate):
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        ByteDropout(rate)


def test_drops_the_effective_rate_and_scales_the_kept_values():
    tf.random.set_seed(3)
    layer = ByteDropout(0.1)
    out = layer(tf.ones([1000, 400]), training=True).numpy()
    kept = out != 0
    # 26 / 256 of 400,000 values dropped: 40,625 expected, binomial std 191
    assert abs((~kept).sum() - 40_625) < 5 * 191
    np.testing.assert_allclose(out[kept], 256 / 230, rtol=1e-6)
    assert layer.effective_rate == pytest.approx(26 / 256)
    assert abs(out.mean() - 1.0) < 0.005  # the expectation is the input


def test_the_mask_differs_across_rows_and_calls_and_reproduces_under_a_seed():
    layer = ByteDropout(0.5)
    tf.random.set_seed(7)
    first, second = (layer(tf.ones([64, 32]), training=True).numpy() for _ in range(2))
    tf.random.set_seed(7)
    again = layer(tf.ones([64, 32]), training=True).numpy()
    assert not np.array_equal(first, second)
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first, again)


def test_the_gradient_is_the_scaled_mask():
    layer = ByteDropout(0.25)
    x = tf.random.normal([50, 20])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        total = tf.reduce_sum(y)
    gradient = tape.gradient(total, x).numpy()
    expected = np.where(y.numpy() != 0, 256 / 192, 0.0)  # threshold 64
    np.testing.assert_allclose(gradient, expected, rtol=1e-6)


def test_identity_outside_training_and_at_rate_zero():
    x = tf.random.normal([8, 5])
    np.testing.assert_array_equal(ByteDropout(0.3)(x, training=False).numpy(), x.numpy())
    np.testing.assert_array_equal(ByteDropout(0.0)(x, training=True).numpy(), x.numpy())


def test_any_shape_keeps_its_shape():
    x = tf.ones([3, 5, 7])  # 105 values: not a multiple of the 4 bytes of a word
    assert ByteDropout(0.2)(x, training=True).shape == (3, 5, 7)


def test_config_round_trip_and_the_mlp_uses_it():
    layer = ByteDropout(0.2, name="d")
    clone = ByteDropout.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.threshold == 51
    assert all(isinstance(d, ByteDropout) for d in MLP([4, 3], dropout=0.1).drop)
