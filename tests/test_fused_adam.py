"""FusedAdam: a hand-worked first step, the same updates as tf_keras' Adam for dense and sparse
gradients under a learning-rate schedule (inside a tf.function, as the training loop runs it), and
checkpoints that move between the two optimizers."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mdrec.training.fused_adam import FusedAdam


def test_first_step_by_hand():
    # From zero moments: m = 0.1 g, v = 0.001 g², α = lr·√0.001 / 0.1, so the step is
    # α·m / (√v + ε) = lr·g / (|g| + ε/√0.001) ≈ lr·sign(g).
    w = tf.Variable([1.0, -2.0, 0.5])
    FusedAdam(0.01).apply_gradients([(tf.constant([0.5, -3.0, 1e-3]), w)])
    eps = 1e-7 / np.sqrt(0.001)
    expected = [1.0 - 0.01 * 0.5 / (0.5 + eps), -2.0 + 0.01 * 3.0 / (3.0 + eps), 0.5 - 0.01 * 1e-3 / (1e-3 + eps)]
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


def _train(optimizer_class: type, steps: int, amsgrad: bool = False, seed: int = 0) -> list[np.ndarray]:
    """A dense kernel and an embedding table (sparse gradients, a repeated row) trained ``steps`` steps."""
    rng = np.random.default_rng(seed)
    kernel = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32))
    table = tf.Variable(rng.normal(size=(6, 3)).astype(np.float32))
    x = tf.constant(rng.normal(size=(5, 4)).astype(np.float32))
    rows = tf.constant([0, 2, 2, 5, 1])
    schedule = tf_keras.optimizers.schedules.ExponentialDecay(3e-2, decay_steps=2, decay_rate=0.5)
    optimizer = optimizer_class(schedule, amsgrad=amsgrad)

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(x @ kernel - tf.gather(table, rows)))
        optimizer.apply_gradients(zip(tape.gradient(loss, [kernel, table]), [kernel, table]))

    for _ in range(steps):
        step()
    return [kernel.numpy(), table.numpy()]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_same_updates_as_tf_keras_adam(amsgrad: bool):
    fused = _train(FusedAdam, 6, amsgrad)
    plain = _train(tf_keras.optimizers.Adam, 6, amsgrad)
    start = _train(FusedAdam, 0)
    for a, b, before in zip(fused, plain, start):
        assert np.abs(b - before).max() > 0.05  # the weights moved
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoints_move_between_the_two(tmp_path):
    def pair(optimizer: tf_keras.optimizers.Optimizer) -> tuple[tf.Variable, tf.train.Checkpoint]:
        w = tf.Variable([[1.0, -1.0], [0.5, 2.0]])
        optimizer.build([w])
        return w, tf.train.Checkpoint(w=w, optimizer=optimizer)

    def steps(w: tf.Variable, optimizer: tf_keras.optimizers.Optimizer, n: int) -> None:
        for k in range(n):
            optimizer.apply_gradients([(tf.constant([[1.0, -2.0], [0.3, 0.1]]) * (k + 1), w)])

    w, checkpoint = pair(tf_keras.optimizers.Adam(0.1))
    steps(w, checkpoint.optimizer, 3)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    steps(w, checkpoint.optimizer, 2)  # the run that never stopped

    resumed_w, resumed = pair(FusedAdam(0.1))
    resumed.restore(path).assert_consumed()
    assert int(resumed.optimizer.iterations) == 3
    steps(resumed_w, resumed.optimizer, 2)
    np.testing.assert_allclose(resumed_w.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
