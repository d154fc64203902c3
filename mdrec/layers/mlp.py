"""A plain multi-layer perceptron block."""
from __future__ import annotations

from typing import Any, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.layers.dropout import ByteDropout


class MLP(tf_keras.layers.Layer):
    """Dense -> activation -> dropout, per hidden width. [B, d_in] -> [B, hidden[-1]]."""

    def __init__(self, hidden: Sequence[int], dropout: float = 0.0, activation: str = "relu",
                 l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.activation = activation
        self.l2 = float(l2)
        regularizer = tf_keras.regularizers.l2(l2) if l2 else None
        self.dense = [tf_keras.layers.Dense(h, activation=activation, kernel_regularizer=regularizer,
                                            name=f"dense_{i}") for i, h in enumerate(self.hidden)]
        self.drop = [ByteDropout(dropout) for _ in self.hidden] if dropout else []

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        for i, dense in enumerate(self.dense):
            x = dense(x)
            if self.drop:
                x = self.drop[i](x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden": list(self.hidden), "dropout": self.dropout,
                "activation": self.activation, "l2": self.l2}
