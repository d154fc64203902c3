"""Domain-aware building blocks: route examples to their domain's weights without running every
domain's weights over every example.

Routing uses ``tf.dynamic_partition`` / ``tf.dynamic_stitch``: a batch is split by domain, each part
meets only its own domain's parameters, and the results are put back in batch order. The FLOPs are
those of one dense layer over the batch, whatever the number of domains.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras


def route_by_domain(inputs: tf.Tensor | dict[str, tf.Tensor], domain: tf.Tensor, num_domains: int,
                    fn: Callable[[int, object], tf.Tensor]) -> tf.Tensor:
    """Apply ``fn(d, inputs_of_domain_d)`` to each domain's examples and restore batch order.

    inputs: a tensor [B, ...] or a dict of such tensors; domain: int32 [B] in [0, num_domains).
    """
    domain = tf.cast(domain, tf.int32)
    positions = tf.dynamic_partition(tf.range(tf.shape(domain)[0]), domain, num_domains)
    if isinstance(inputs, dict):
        parts = {k: tf.dynamic_partition(v, domain, num_domains) for k, v in inputs.items()}
        per_domain = [{k: parts[k][d] for k in parts} for d in range(num_domains)]
    else:
        per_domain = tf.dynamic_partition(inputs, domain, num_domains)
    outputs = [fn(d, per_domain[d]) for d in range(num_domains)]
    return tf.dynamic_stitch(positions, outputs)


Weights = list[tuple[tf.Tensor, tf.Tensor]]  # (kernel, bias) per layer


def route_with_weights(x: tf.Tensor, domain: tf.Tensor, weights: Weights,
                       fn: Callable[[tf.Tensor, tf.Tensor, Weights], tf.Tensor], shortcut: bool = True) -> tf.Tensor:
    """``fn(rows, d, that domain's weights)`` over each domain's rows of x, in batch order.

    x [B, d_in], domain int [B], weights: (kernels [M, ...], biases [M, ...]) per layer; ``fn``
    gets the rows of domain d (int32 []) and each layer's (kernel, bias) of d. With ``shortcut``, a
    batch of one domain (a single serving request) runs ``fn`` once on the whole batch with that
    domain's weights; otherwise (and for a mixed batch) the batch is partitioned by domain. The
    weights are split with one ``tf.unstack``, whose gradient is one stack of the M domain
    gradients: indexing ``kernels[d]`` per domain instead sends back M dense [M, ...] gradients to
    be summed, a cost quadratic in M (at 30 domains it made STAR's training step 3.7-5x
    shared-bottom's).
    """
    domain = tf.cast(domain, tf.int32)
    num_domains = int(weights[0][0].shape[0])

    def single() -> tf.Tensor:
        d = domain[0]
        return fn(x, d, [(tf.gather(k, d), tf.gather(b, d)) for k, b in weights])

    def mixed() -> tf.Tensor:
        split = [(tf.unstack(k, num=num_domains), tf.unstack(b, num=num_domains)) for k, b in weights]
        return route_by_domain(x, domain, num_domains,
                               lambda d, part: fn(part, tf.constant(d), [(k[d], b[d]) for k, b in split]))

    return tf.cond(single_domain(domain), single, mixed) if shortcut else mixed()


def domain_matmul(x: tf.Tensor, domain: tf.Tensor, kernels: tf.Tensor, biases: tf.Tensor) -> tf.Tensor:
    """x[i] @ kernels[domain[i]] + biases[domain[i]] for every example i.

    x [B, d_in], domain int [B], kernels [M, d_in, units], biases [M, units] -> [B, units], routed
    by :func:`route_with_weights` (a one-domain batch takes one matmul with that domain's weights).
    """
    return route_with_weights(x, domain, [(kernels, biases)],
                              lambda rows, _, layer: tf.matmul(rows, layer[0][0]) + layer[0][1])


def single_domain(domain: tf.Tensor) -> tf.Tensor:
    """bool []: the batch (domain int [B]) is not empty and holds one domain only."""
    return tf.logical_and(tf.size(domain) > 0, tf.reduce_all(tf.equal(domain, domain[:1])))


class PartitionedNormalization(tf_keras.layers.Layer):
    """STAR's partitioned normalization. [B, d] x domain [B] -> [B, d].

    z' = (γ·γ_p) · (z − μ) / sqrt(σ² + ε) + (β + β_p)

    Training: μ, σ² are the batch statistics of the example's own domain (per-domain segment
    means), and each domain's moving statistics move toward them. A domain absent from the batch
    keeps its moving statistics untouched. Inference: the domain's moving statistics.
    """

    def __init__(self, num_domains: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_domains = int(num_domains)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tf.TensorShape) -> None:
        dim = int(input_shape[-1])
        m = self.num_domains
        self.gamma = self.add_weight("gamma", [dim], initializer="ones")
        self.beta = self.add_weight("beta", [dim], initializer="zeros")
        self.domain_gamma = self.add_weight("domain_gamma", [m, dim], initializer="ones")
        self.domain_beta = self.add_weight("domain_beta", [m, dim], initializer="zeros")
        self.moving_mean = self.add_weight("moving_mean", [m, dim], initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight("moving_variance", [m, dim], initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, x: tf.Tensor, domain: tf.Tensor, training: bool = False) -> tf.Tensor:
        # Per-domain sums and lookups are one-hot matmuls: dense ops with dense gradients, much
        # faster on CPU than segment sums and gathers (whose gradients are scatters).
        onehot = tf.one_hot(tf.cast(domain, tf.int32), self.num_domains, dtype=x.dtype)    # [B, M]
        if training:
            count = tf.reduce_sum(onehot, axis=0)[:, None]                                    # [M, 1]
            safe = tf.maximum(count, 1.0)
            mean = tf.matmul(onehot, x, transpose_a=True) / safe                              # [M, d]
            centred = x - tf.matmul(onehot, mean)
            variance = tf.matmul(onehot, tf.square(centred), transpose_a=True) / safe
            present = count > 0  # only domains in this batch move their statistics
            m = self.momentum
            self.moving_mean.assign(tf.where(present, m * self.moving_mean + (1 - m) * mean, self.moving_mean))
            self.moving_variance.assign(
                tf.where(present, m * self.moving_variance + (1 - m) * variance, self.moving_variance))
        else:
            mean, variance = self.moving_mean, self.moving_variance
            centred = x - tf.matmul(onehot, mean)
        # (γ·γ_p) / sqrt(σ² + ε) per domain, then one lookup per row.
        scale = self.gamma * self.domain_gamma * tf.math.rsqrt(variance + self.epsilon)
        return centred * tf.matmul(onehot, scale) + (self.beta + tf.matmul(onehot, self.domain_beta))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_domains": self.num_domains, "momentum": self.momentum,
                "epsilon": self.epsilon}


class _PerDomainDense(tf_keras.layers.Layer):
    """Shared constructor and config of the dense layers routed by domain."""

    def __init__(self, units: int, num_domains: int, activation: str | None = "relu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_domains = int(num_domains)
        self.activation = tf_keras.activations.get(activation)

    def _activate(self, out: tf.Tensor) -> tf.Tensor:
        return self.activation(out) if self.activation is not None else out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "num_domains": self.num_domains,
                "activation": tf_keras.activations.serialize(self.activation)}


_tracing = threading.local()


@contextlib.contextmanager
def fused_inference() -> Iterator[None]:
    """Inference traced in this block reads STAR's fused weights with no staleness check.

    For exports: their weights are fused before tracing (``prepare_inference``) and cannot change
    afterwards, so the check (a ``tf.cond``, 10-15% of a served request) buys nothing.
    """
    previous = getattr(_tracing, "trust_fused", False)
    _tracing.trust_fused = True
    try:
        yield
    finally:
        _tracing.trust_fused = previous


def trusts_fused() -> bool:
    """Whether the inference being traced reads fused weights unchecked (inside :func:`fused_inference`)."""
    return bool(getattr(_tracing, "trust_fused", False))


class StarDense(_PerDomainDense):
    """STAR's star-topology fully connected layer. [B, d_in] x domain [B] -> [B, units].

    Domain p uses W*_p = W ⊙ W_p and b*_p = b + b_p. W learns from every example, W_p only from
    domain p's. A call computes W ⊙ W_p itself, except when traced under :func:`fused_inference`
    (exports), where inference reads ``fused_kernel``: W*_p for every domain, precomputed by
    :meth:`fuse` just before, so serving costs what one dense layer costs. A stack of these layers
    routed once and served fused when fresh is :class:`mdrec.layers.star.StarTower`.
    """

    def build(self, input_shape: tf.TensorShape) -> None:
        d_in, m = int(input_shape[-1]), self.num_domains
        self.kernel = self.add_weight("kernel", [d_in, self.units], initializer="glorot_uniform")
        self.bias = self.add_weight("bias", [self.units], initializer="zeros")
        # Domain weights start at 1 and 0: every domain starts as the shared network.
        self.domain_kernel = self.add_weight("domain_kernel", [m, d_in, self.units], initializer="ones")
        self.domain_bias = self.add_weight("domain_bias", [m, self.units], initializer="zeros")
        self.fused_kernel = self.add_weight("fused_kernel", [m, d_in, self.units], initializer="zeros",
                                            trainable=False)
        self.fused_bias = self.add_weight("fused_bias", [m, self.units], initializer="zeros", trainable=False)
        super().build(input_shape)

    def fuse(self) -> None:
        """Precompute W*_p and b*_p for inference."""
        kernels, biases = self.domain_weights()
        self.fused_kernel.assign(kernels)
        self.fused_bias.assign(biases)

    def domain_weights(self, fused: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(kernels [M, d_in, units], biases [M, units]): W ⊙ W_p and b + b_p, or (``fused``) the
        copies the last :meth:`fuse` stored."""
        if fused:
            return self.fused_kernel, self.fused_bias
        # W ⊙ W_p for every domain at once: one product of M·d_in·units values, small beside the matmuls
        return self.kernel[None] * self.domain_kernel, self.bias[None] + self.domain_bias

    def call(self, x: tf.Tensor, domain: tf.Tensor, training: bool = False) -> tf.Tensor:
        fused = not training and trusts_fused()
        return self._activate(domain_matmul(x, domain, *self.domain_weights(fused)))


class DomainDense(_PerDomainDense):
    """One dense layer per domain (no sharing): [B, d_in] x domain [B] -> [B, units]."""

    def build(self, input_shape: tf.TensorShape) -> None:
        d_in = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", [self.num_domains, d_in, self.units], initializer="glorot_uniform")
        self.bias = self.add_weight("bias", [self.num_domains, self.units], initializer="zeros")
        super().build(input_shape)

    def call(self, x: tf.Tensor, domain: tf.Tensor) -> tf.Tensor:
        return self._activate(domain_matmul(x, domain, self.kernel, self.bias))


def domain_tower(widths: Sequence[int], num_domains: int, layer: type[_PerDomainDense] = DomainDense,
                 name: str = "tower") -> list[_PerDomainDense]:
    """Hidden layers (ReLU) then a 1-unit linear output, each routed by domain."""
    layers = [layer(w, num_domains, name=f"{name}_{i}") for i, w in enumerate(widths)]
    layers.append(layer(1, num_domains, activation=None, name=f"{name}_out"))
    return layers
