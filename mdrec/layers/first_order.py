"""First-order terms: one learned bias per user, item, line and (user, line) pair.

    logit_0 = b + w_user[u] + w_item[i] + w_line[d] + w_user_line[u, d]

This is the first-order logistic sanity row (the "wide" part of Wide & Deep) inside the model, so a
deep model never has to rebuild "this user clicks a lot" from an embedding through its MLP, and
cannot end below the smoothed means it is compared with for lack of them.

Each table is L2-regularised toward 0 by ``prior`` pseudo-impressions: a row seen n times moves
about n / (n + prior) of the way toward its own click rate, as the smoothed user+item mean does.
In terms of the training objective (mean cross-entropy over ``rows`` examples, curvature about
p(1 - p) ≤ 1/4 per impression), that is an L2 weight of ``prior / (8 · rows)`` on every row.
"""
from __future__ import annotations

from typing import Any

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras


class FirstOrderTerms(tf_keras.layers.Layer):
    """(user ids, item ids, line ids) int [B] -> logit offsets float32 [B].

    ``num_users`` / ``num_items``: the sizes of the id lookups (OOV and mask rows included); an id
    outside the vocabulary reads its lookup's OOV row like any embedding. ``item_bias=False`` leaves
    the item term out (a content-only item encoder reads no item id). ``learning_rate_scale``: the
    tables hold w / scale and multiply it back, so Adam, whose step size ignores the gradient's
    scale, moves a bias ``scale`` times faster than an embedding weight; a per-user bias must travel
    far (a logit of ±2) in the few updates a user gets per epoch.
    """

    def __init__(self, num_users: int, num_items: int, num_lines: int, *, prior: float = 5.0,
                 rows: int = 1, item_bias: bool = True, learning_rate_scale: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if prior < 0:
            raise ValueError(f"prior must be >= 0 pseudo-impressions, got {prior}")
        self.num_users, self.num_items, self.num_lines = int(num_users), int(num_items), int(num_lines)
        self.prior, self.rows, self.item_bias = float(prior), max(int(rows), 1), bool(item_bias)
        self.learning_rate_scale = float(learning_rate_scale)
        # The penalty is on w = scale · stored, so the stored rows carry scale² of it.
        l2 = self.prior / (8.0 * self.rows) * self.learning_rate_scale ** 2
        regularizer = tf_keras.regularizers.l2(l2) if l2 else None

        def table(size: int, name: str) -> tf_keras.layers.Embedding:
            return tf_keras.layers.Embedding(size, 1, embeddings_initializer="zeros",
                                             embeddings_regularizer=regularizer, name=name)

        self.user = table(self.num_users, "user_bias")
        self.item = table(self.num_items, "item_bias") if self.item_bias else None
        self.line = table(self.num_lines, "line_bias")
        self.user_line = table(self.num_users * self.num_lines, "user_line_bias")
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

    def call(self, user: tf.Tensor, item: tf.Tensor, line: tf.Tensor) -> tf.Tensor:
        user, item, line = (tf.cast(t, tf.int64) for t in (user, item, line))
        total = self.user(user) + self.line(line) + self.user_line(user * self.num_lines + line)
        if self.item is not None:
            total += self.item(item)
        return self.bias + self.learning_rate_scale * tf.squeeze(total, -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_users": self.num_users, "num_items": self.num_items,
                "num_lines": self.num_lines, "prior": self.prior, "rows": self.rows,
                "item_bias": self.item_bias, "learning_rate_scale": self.learning_rate_scale}
