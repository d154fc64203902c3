"""STAR's star-topology network: StarDense layers routed by domain once for the whole stack."""
from __future__ import annotations

from typing import Any, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.layers.domain import PartitionedNormalization, StarDense, Weights, route_with_weights, trusts_fused
from mdrec.layers.dropout import ByteDropout


class StarTower(tf_keras.layers.Layer):
    """Hidden StarDense layers (optional partitioned normalization, ReLU, dropout), then a linear
    StarDense output. [B, d_in] x domain int [B] -> [B, units].

    A mixed batch is partitioned by domain once at the input and put back in order once at the
    output: each domain's rows run through the whole stack with that domain's weights W ⊙ W_p.
    Routing every layer separately costs a partition and a stitch per layer (bench/star_cost.py,
    mixed batches: STAR's training step took 1.33x shared-bottom's at 3 domains and 1.91x at 30;
    routed once, 1.14x and 1.72x). At inference a batch of one domain (a single request) takes that
    domain's weights directly; training always partitions (a cond per step cost more than it saved).

    Inference reads the fused weights W*_p (:meth:`fuse`) while ``is_fused`` holds and computes
    W ⊙ W_p otherwise. A training call clears ``is_fused``, so a model trained by any loop scores
    correctly before and after :meth:`fuse`; only weights assigned by hand need a :meth:`fuse`.
    Exports trace under :func:`mdrec.layers.domain.fused_inference`: fused weights, no check.
    """

    def __init__(self, hidden: Sequence[int], num_domains: int, units: int = 1, dropout: float = 0.0,
                 normalization: bool = False, pn_momentum: float = 0.9, **kwargs: Any) -> None:
        """``normalization``: partitioned normalization after each hidden layer's linear part,
        before the ReLU (STAR's PN, :class:`PartitionedNormalization`)."""
        super().__init__(**kwargs)
        self.hidden = tuple(int(w) for w in hidden)
        self.num_domains = int(num_domains)
        self.units = int(units)
        self.dropout = float(dropout)
        self.normalization = bool(normalization)
        self.pn_momentum = float(pn_momentum)
        m = self.num_domains
        self.star = [StarDense(w, m, activation=None, name=f"star_{i}") for i, w in enumerate(self.hidden)]
        self.star_out = StarDense(self.units, m, activation=None, name="star_out")
        self.norms = [PartitionedNormalization(m, pn_momentum, name=f"pn_{i}") for i in range(len(self.hidden))] \
            if normalization else []
        self.drop = [ByteDropout(dropout) for _ in self.hidden] if dropout else []

    def build(self, input_shape: tf.TensorShape) -> None:
        width = int(input_shape[-1])
        for i, layer in enumerate(self.star):
            layer.build(tf.TensorShape([None, width]))
            width = layer.units
            if self.norms:
                self.norms[i].build(tf.TensorShape([None, width]))
        self.star_out.build(tf.TensorShape([None, width]))
        # Saved with the fused weights it vouches for; a checkpoint without it restores "not fused".
        self.is_fused = self.add_weight("is_fused", [], dtype=tf.bool, initializer="zeros", trainable=False,
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        super().build(input_shape)

    def fuse(self) -> None:
        """Precompute every layer's W*_p and b*_p for inference."""
        for layer in self.star + [self.star_out]:
            layer.fuse()
        self.is_fused.assign(True)

    def call(self, x: tf.Tensor, domain: tf.Tensor, training: bool = False) -> tf.Tensor:
        if training:
            self.is_fused.assign(False)  # the step about to be taken makes the fused weights stale
            return self._route(x, domain, fused=False, training=True)
        if trusts_fused():
            return self._route(x, domain, fused=True)
        return tf.cond(self.is_fused, lambda: self._route(x, domain, fused=True),
                       lambda: self._route(x, domain, fused=False))

    def _route(self, x: tf.Tensor, domain: tf.Tensor, fused: bool, training: bool = False) -> tf.Tensor:
        weights = [layer.domain_weights(fused) for layer in self.star + [self.star_out]]
        # No one-line shortcut in training: its cond cost 0.7 ms of a 7 ms step (2 lines, batch
        # 1024), and the partitioned path is correct for a one-line batch too (empty parts).
        return route_with_weights(x, domain, weights, lambda rows, d, own: self._chain(rows, d, own, training),
                                  shortcut=not training)

    def _chain(self, h: tf.Tensor, d: tf.Tensor, weights: Weights, training: bool) -> tf.Tensor:
        """The stack over rows of domain ``d`` (int32 []) with that domain's (kernel, bias) per layer."""
        for i, (kernel, bias) in enumerate(weights[:-1]):
            h = tf.nn.bias_add(tf.matmul(h, kernel), bias)  # grappler fuses MatMul, BiasAdd and Relu
            if self.norms:
                h = self.norms[i](h, tf.fill(tf.shape(h)[:1], d), training=training)
            h = tf.nn.relu(h)
            if self.drop:
                h = self.drop[i](h, training=training)
        kernel, bias = weights[-1]
        return tf.nn.bias_add(tf.matmul(h, kernel), bias)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden": list(self.hidden), "num_domains": self.num_domains,
                "units": self.units, "dropout": self.dropout, "normalization": self.normalization,
                "pn_momentum": self.pn_momentum}
