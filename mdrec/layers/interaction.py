"""Pairwise feature interactions (DLRM-style) over features of different widths."""
from __future__ import annotations

from typing import Any, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

# Up to this many features each pair's product is its own multiply and sum; beyond it, tfrs'
# DotInteraction (one batched matmul of [B, k, dim] and a mask). On 2 CPU cores a batch of 1024
# tiny [k, k] products plus the boolean mask cost 0.8 ms of a shared-bottom training step for the
# 3 features of Douban, the pairs written out 0.07 ms; the pairs fall behind at about 12 features.
PAIRWISE_MAX_FEATURES = 10


def lower_pairs(k: int) -> list[tuple[int, int]]:
    """The (i, j) with j < i, row by row: the order of tfrs' DotInteraction(self_interaction=False)."""
    return [(i, j) for i in range(k) for j in range(i)]


class ProjectedDotInteraction(tf_keras.layers.Layer):
    """Projects every feature vector to ``dim`` and returns all pairwise dot products.

    MLPs approximate a user-item dot product poorly (Rendle et al., RecSys 2020), so the
    products are given to the MLP explicitly, as DLRM does. [B, d_i] x k -> [B, k(k-1)/2],
    column p the product of the pair ``lower_pairs(k)[p]`` (tfrs' DotInteraction's order).
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
        projected = [project(v) for project, v in zip(self.projections, vectors)]
        if not 2 <= len(projected) <= PAIRWISE_MAX_FEATURES:  # (fewer than 2: no pair, [B, 0])
            return self.dot(projected)
        return tf.stack([tf.reduce_sum(projected[i] * projected[j], axis=-1)
                         for i, j in lower_pairs(len(projected))], axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim}
