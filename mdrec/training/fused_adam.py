"""Adam whose dense updates run as TensorFlow's fused kernel: the same step in one pass.

tf_keras' Adam updates a dense variable in about eight elementwise ops (m, v, then the weights
from m and v read again), each a pass over the variable's memory. On CPU these passes are
memory-bound: STAR at 30 lines holds 4x shared-bottom's dense weights (each line's W_p), and
its Adam update took about 4 ms of a 30-35 ms step (bench/star_cost.py shapes, batch 2000,
7 alternating rounds: 34.8 -> 30.3 ms with the fused kernel; STAR over shared-bottom 1.99x ->
1.76x). ``ResourceApplyAdam`` computes the same formulae (m += (g − m)(1 − β1),
v += (g² − v)(1 − β2), w −= α·m / (√v + ε), α = lr·√(1 − β2^t) / (1 − β1^t)) in one pass.
"""
from __future__ import annotations

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras


class FusedAdam(tf_keras.optimizers.Adam):
    """``tf_keras.optimizers.Adam`` with dense gradients applied by ``ResourceApplyAdam``.

    Same slots and arguments (checkpoints of either restore into the other), same updates up to
    float rounding. Sparse gradients (embedding rows), ``amsgrad`` and ``adaptive_epsilon`` keep
    tf_keras' own update: the fused kernel has no sparse form, and its ε is the plain one.
    """

    def update_step(self, gradient: tf.Tensor | tf.IndexedSlices, variable: tf.Variable) -> None:
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad or self.adaptive_epsilon:
            super().update_step(gradient, variable)
            return
        index = self._index_dict[self._var_key(variable)]
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), local_step),
            lr=tf.cast(self.learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype), grad=gradient)
