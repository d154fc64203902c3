"""Pairwise feature interactions (DLRM-style) over features of different widths."""
from __future__ import annotations

from typing import Any, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras


class ProjectedDotInteraction(tf_keras.layers.Layer):
    """Projects every feature vector to ``dim`` and returns all pairwise dot products.

    MLPs approximate a user-item dot product poorly (Rendle et al., RecSys 2020), so the
    products are given to the MLP explicitly, as DLRM does. [B, d_i] x k -> [B, k(k-1)/2].
    """

    def __init__(self, dim: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dot = tfrs.layers.feature_interaction.DotInteraction(self_interaction=False)
        self.projections: list[tf_keras.layers.Dense] = []

    def build(self, input_shape: Sequence[tf.TensorShape]) -> None:
        self.projections = [tf_keras.layers.Dense(self.dim, use_bias=False, name=f"project_{i}")
                            for i in range(len(input_shape))]
        super().build(input_shape)

    def call(self, vectors: list[tf.Tensor]) -> tf.Tensor:
        return self.dot([project(v) for project, v in zip(self.projections, vectors)])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim}
