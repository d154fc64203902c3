"""The projected dot interaction: hand-worked products, the same columns as tfrs' DotInteraction on
both of its paths (pairs written out, and tfrs' batched form past PAIRWISE_MAX_FEATURES), the same
gradients, and a config round trip."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from mdrec.layers.interaction import PAIRWISE_MAX_FEATURES, ProjectedDotInteraction, lower_pairs


def _built(widths: list[int], dim: int, seed: int = 0) -> tuple[ProjectedDotInteraction, list[tf.Tensor]]:
    rng = np.random.default_rng(seed)
    vectors = [tf.constant(rng.normal(size=(5, w)), tf.float32) for w in widths]
    layer = ProjectedDotInteraction(dim)
    layer(vectors)
    return layer, vectors


def test_products_by_hand():
    layer, _ = _built([2, 2, 1], dim=2)
    # Projections: feature 0 as it is, feature 1 doubled and swapped, feature 2 (width 1) to [1, -1].
    layer.projections[0].kernel.assign([[1.0, 0.0], [0.0, 1.0]])
    layer.projections[1].kernel.assign([[0.0, 2.0], [2.0, 0.0]])
    layer.projections[2].kernel.assign([[1.0, -1.0]])
    out = layer([tf.constant([[1.0, 2.0]]), tf.constant([[3.0, 4.0]]), tf.constant([[5.0]])]).numpy()
    # p0 = [1, 2], p1 = [8, 6], p2 = [5, -5]; pairs (1, 0), (2, 0), (2, 1):
    # 8 + 12 = 20; 5 - 10 = -5; 40 - 30 = 10
    np.testing.assert_allclose(out, [[20.0, -5.0, 10.0]])


def test_pairs_follow_tfrs_order():
    assert lower_pairs(4) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def test_both_paths_match_tfrs_values_and_gradients():
    reference = tfrs.layers.feature_interaction.DotInteraction(self_interaction=False)
    for k in (2, 4, PAIRWISE_MAX_FEATURES + 2):  # written-out pairs, and tfrs' own path
        layer, vectors = _built([3 + i % 2 for i in range(k)], dim=4, seed=k)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(vectors)
            out = layer(vectors)
            expected = reference([p(v) for p, v in zip(layer.projections, vectors)])
            loss, expected_loss = (tf.reduce_sum(tf.sin(x)) for x in (out, expected))
        assert out.shape == (5, k * (k - 1) // 2)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        for got, want in zip(tape.gradient(loss, vectors + layer.trainable_variables),
                             tape.gradient(expected_loss, vectors + layer.trainable_variables)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_one_feature_has_no_pair():
    layer, vectors = _built([3], dim=2)
    assert layer(vectors).shape == (5, 0)


def test_config_round_trip():
    layer = ProjectedDotInteraction(8, name="interaction")
    again = ProjectedDotInteraction.from_config(layer.get_config())
    assert again.dim == 8 and again.name == "interaction"
