"""First-order terms: the logit offset is the sum of the looked-up biases (hand-worked), the L2
weight follows the prior in pseudo-impressions, and the layer round-trips its config."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mdrec.layers.first_order import FirstOrderTerms


def _layer(**overrides) -> FirstOrderTerms:
    layer = FirstOrderTerms(**{"num_users": 3, "num_items": 2, "num_lines": 2, "prior": 4.0, "rows": 100,
                               "learning_rate_scale": 10.0, **overrides})
    layer(tf.constant([0]), tf.constant([0]), tf.constant([0]))  # build
    return layer


def _set(layer: FirstOrderTerms) -> None:
    # Stored values are w / scale (scale 10): user w = [0.1, 0.2, 0.3], item w = [1, 2], line w = [5, 7],
    # (user, line) w = [0 .. 5] / 100 at index user * 2 + line, global bias 0.5.
    layer.user.embeddings.assign(np.array([[0.01], [0.02], [0.03]]))
    if layer.item is not None:
        layer.item.embeddings.assign(np.array([[0.1], [0.2]]))
    layer.line.embeddings.assign(np.array([[0.5], [0.7]]))
    layer.user_line.embeddings.assign(np.arange(6, dtype=np.float32)[:, None] / 1000)
    layer.bias.assign(0.5)


def test_offset_is_the_sum_of_the_biases():
    layer = _layer()
    _set(layer)
    out = layer(tf.constant([2, 0]), tf.constant([1, 0]), tf.constant([1, 0])).numpy()
    # row 0: 0.5 + user 0.3 + item 2 + line 7 + (user 2, line 1 -> index 5) 0.05
    # row 1: 0.5 + user 0.1 + item 1 + line 5 + (user 0, line 0 -> index 0) 0.0
    np.testing.assert_allclose(out, [9.85, 6.6], rtol=1e-6)


def test_without_the_item_term():
    layer = _layer(item_bias=False)
    _set(layer)
    assert layer.item is None
    out = layer(tf.constant([2]), tf.constant([1]), tf.constant([1])).numpy()
    np.testing.assert_allclose(out, [0.5 + 0.3 + 7 + 0.05], rtol=1e-6)


def test_l2_weight_is_the_prior_over_eight_rows_on_the_real_scale():
    layer = _layer()
    _set(layer)
    # l2 on stored values = prior / (8 rows) * scale^2 = 4 / 800 * 100 = 0.5 per squared stored weight.
    stored = (0.01 ** 2 + 0.02 ** 2 + 0.03 ** 2) + (0.1 ** 2 + 0.2 ** 2) + (0.5 ** 2 + 0.7 ** 2) \
        + sum((k / 1000) ** 2 for k in range(6))
    np.testing.assert_allclose(float(tf.add_n(layer.losses)), 0.5 * stored, rtol=1e-5)
    assert _layer(prior=0.0).losses == []
    with pytest.raises(ValueError, match="prior must be >= 0"):
        FirstOrderTerms(3, 2, 2, prior=-1.0)


def test_config_round_trip():
    layer = _layer(item_bias=False)
    clone = FirstOrderTerms.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.item is None and clone.num_users == 3 and clone.rows == 100


def test_ctr_models_carry_the_terms_and_a_content_item_encoder_gets_no_item_bias(tiny_spec_path, tiny_splits):
    from mdrec.data.log import load_log
    from mdrec.data.transform import Transform
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec, with_domain_values

    from mdrec.data.catalogue import Catalogue

    spec = load_spec(tiny_spec_path)
    log = load_log(tiny_splits["train"], spec)
    transform = Transform.fit(log, spec)
    spec = with_domain_values(spec, transform.domains)
    by_id = build_model("star", spec, transform, hidden=[8])
    assert by_id.first_order.item is not None and by_id.first_order.rows == transform.rows
    # user_id table: 40 users + OOV + mask rows; 3 lines -> one (user, line) row per pair.
    assert by_id.first_order.user_line.input_dim == by_id.first_order.num_users * 3
    content = build_model("shared_bottom", spec, transform, hidden=[8], item_encoder="content",
                          catalogue=Catalogue.from_log(log, spec, transform.domains))
    assert content.first_order.item is None
    assert build_model("mmoe", spec, transform, first_order=False).first_order is None
