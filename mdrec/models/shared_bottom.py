"""Shared-bottom CTR model (STAR's "Base"): one MLP over all features for every domain.

The domain enters only as one more embedded feature, so all domains share every weight. By default
the MLP also sees the pairwise dot products of the (projected) feature embeddings (DLRM's
interaction); ``interaction="none"`` gives the plain MLP.
"""
from __future__ import annotations

from typing import Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.transform import Transform
from mdrec.layers.features import FeatureEncoder
from mdrec.layers.interaction import ProjectedDotInteraction
from mdrec.layers.mlp import MLP
from mdrec.spec import Spec


class SharedBottom(tf_keras.Model):
    """inputs (raw features, see ``layers.features``) -> logit [B]."""

    def __init__(self, spec: Spec, transform: Transform, hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.1, embeddings_l2: float = 0.0, interaction: str = "dot",
                 interaction_dim: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.encoder = FeatureEncoder(spec, transform, embeddings_l2=embeddings_l2, name="features")
        if interaction not in ("dot", "none"):
            raise ValueError(f"interaction must be 'dot' or 'none', got {interaction!r}")
        self.interaction = ProjectedDotInteraction(interaction_dim, name="interaction") \
            if interaction == "dot" else None
        self.mlp = MLP(hidden, dropout=dropout, name="bottom")
        self.head = tf_keras.layers.Dense(1, name="logit")

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        embedded = self.encoder(inputs)
        vectors = [embedded[name] for name in sorted(embedded)]
        x = tf.concat(vectors, axis=-1)
        if self.interaction is not None:
            x = tf.concat([x, self.interaction(vectors)], axis=-1)
        return tf.squeeze(self.head(self.mlp(x, training=training)), -1)
