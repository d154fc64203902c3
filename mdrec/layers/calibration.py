"""Per-line calibration of click logits (Platt scaling, one pair of numbers per line).

    calibrated = scale[d] · logit + shift[d]

A model trained on one period and served in the next sees the click rate move (a sale ends, a line
grows): its ranking within a line survives, its probabilities do not. The pair is fitted after
training on the validation split, per line (:func:`mdrec.training.calibration.fit_line_calibration`),
and lives in the model's weights, so evaluation, export and serving all read calibrated scores.
Until fitted the layer is the identity. A monotone map per line leaves every line's AUC unchanged.
"""
from __future__ import annotations

from typing import Any

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras


class LineCalibration(tf_keras.layers.Layer):
    """(logits float32 [B], line ids int [B]) -> calibrated logits float32 [B].

    ``scale`` and ``shift`` float32 [num_lines] are not trained by the optimizer: ``assign`` sets
    them from a fit on held-out rows.
    """

    def __init__(self, num_lines: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_lines = int(num_lines)
        self.scale = self.add_weight(name="scale", shape=(self.num_lines,), initializer="ones", trainable=False)
        self.shift = self.add_weight(name="shift", shape=(self.num_lines,), initializer="zeros", trainable=False)

    def call(self, logits: tf.Tensor, line: tf.Tensor) -> tf.Tensor:
        line = tf.cast(line, tf.int32)
        return tf.gather(self.scale, line) * logits + tf.gather(self.shift, line)

    def assign(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Set the per-line pairs, float [num_lines] each."""
        for variable, values in ((self.scale, scale), (self.shift, shift)):
            values = np.asarray(values, dtype=np.float32)
            if values.shape != (self.num_lines,):
                raise ValueError(f"expected {self.num_lines} values, one per line, got shape {values.shape}")
            variable.assign(values)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_lines": self.num_lines}
