"""Per-line calibration of click logits (Platt scaling, one pair of numbers per line, or per line
and user group).

    calibrated = scale[d + L · g] · logit + shift[d + L · g]     (L lines; g the row's user group)

A model trained on one period and served in the next sees the click rate move (a sale ends, a line
grows): its ranking within a line survives, its probabilities do not. The pair is fitted after
training on the validation split, per line (:func:`mdrec.training.calibration.fit_line_calibration`),
and lives in the model's weights, so evaluation, export and serving all read calibrated scores.
Until fitted the layer is the identity. A monotone map per line leaves every line's AUC unchanged.

With ``user_groups=2`` each line has a pair for users with a training row (g = 0) and one for users
without (g = 1, the user id's out-of-vocabulary row); the fit gives both the line's slope and each
group its own shift. The two groups drift apart: on MovieLens-1M's time split 76% of validation
rows but 19% of test rows come from new users, whose click rate differs, and one pair per line
fitted on that mix left the test's known users 1.14x too high.
"""
from __future__ import annotations

from typing import Any

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras


class LineCalibration(tf_keras.layers.Layer):
    """(logits float32 [B], line ids int [B], user groups int [B] or None) -> calibrated logits float32 [B].

    ``scale`` and ``shift`` float32 [num_lines · user_groups] (line d of group g at d + num_lines ·
    g) are not trained by the optimizer: ``assign`` sets them from a fit on held-out rows. Without
    ``groups`` every row reads group 0.
    """

    def __init__(self, num_lines: int, user_groups: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if user_groups not in (1, 2):
            raise ValueError(f"user_groups must be 1 or 2, got {user_groups}")
        self.num_lines, self.user_groups = int(num_lines), int(user_groups)
        size = self.num_lines * self.user_groups
        self.scale = self.add_weight(name="scale", shape=(size,), initializer="ones", trainable=False)
        self.shift = self.add_weight(name="shift", shape=(size,), initializer="zeros", trainable=False)

    def call(self, logits: tf.Tensor, line: tf.Tensor, groups: tf.Tensor | None = None) -> tf.Tensor:
        index = tf.cast(line, tf.int32)
        if groups is not None and self.user_groups > 1:
            index += self.num_lines * tf.cast(groups, tf.int32)
        return tf.gather(self.scale, index) * logits + tf.gather(self.shift, index)

    def assign(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Set the pairs, float [num_lines · user_groups] each (all lines of group 0 first)."""
        size = self.num_lines * self.user_groups
        for variable, values in ((self.scale, scale), (self.shift, shift)):
            values = np.asarray(values, dtype=np.float32)
            if values.shape != (size,):
                raise ValueError(f"expected {size} values, one per line" + (" and user group" if size > self.num_lines
                                                                              else "") + f", got shape {values.shape}")
            variable.assign(values)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_lines": self.num_lines, "user_groups": self.user_groups}
