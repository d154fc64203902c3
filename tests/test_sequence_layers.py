"""The encoder's building blocks: self-attention against a hand computation, SASRec's block in its
published form, config round trips, and dropout that stays seeded under XLA."""
from __future__ import annotations

import numpy as np
import pytest

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.layers.attention import BERT_INITIALIZER, SelfAttention, seeded_dropout
from mdrec.layers.sequence import SASRecBlock, TransformerBlock


def _identity_attention(dim: int) -> SelfAttention:
    layer = SelfAttention(dim, heads=1)
    layer.build([None, None, dim])
    eye = np.eye(dim, dtype=np.float32)
    layer.query.set_weights([eye, np.zeros(dim, np.float32)])
    layer.key_value.set_weights([np.concatenate([eye, eye], axis=1), np.zeros(2 * dim, np.float32)])
    layer.output_projection.set_weights([eye, np.zeros(dim, np.float32)])
    return layer


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_self_attention_is_the_masked_softmax_of_scaled_dot_products():
    x = np.array([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]], np.float32)
    causal = np.tril(np.ones((3, 3), bool))[None]
    got = _identity_attention(2)(tf.constant(x), mask=tf.constant(causal)).numpy()
    # With identity projections: softmax(x x^T / sqrt(2), masked) x, by hand.
    logits = np.where(causal[0], x[0] @ x[0].T / np.sqrt(2.0), -np.inf)
    np.testing.assert_allclose(got[0], _softmax(logits) @ x[0], rtol=1e-5, atol=1e-6)
    assert got[0, 0] == pytest.approx(x[0, 0])  # the first query reads only itself

    # Keys and values from a separate memory (SASRec: normalised queries, raw keys).
    memory = x[:, ::-1].copy()
    got = _identity_attention(2)(tf.constant(x), mask=None, memory=tf.constant(memory)).numpy()
    np.testing.assert_allclose(got[0], _softmax(x[0] @ memory[0].T / np.sqrt(2.0)) @ memory[0], rtol=1e-5, atol=1e-6)


def test_a_query_with_no_readable_key_gets_the_mean_value_not_nan():
    x = tf.constant([[[1.0, 0.0], [0.0, 2.0]]])
    got = _identity_attention(2)(x, mask=tf.zeros([1, 2, 2], tf.bool)).numpy()
    np.testing.assert_allclose(got[0], [[0.5, 1.0], [0.5, 1.0]], rtol=1e-6)


def test_sasrec_block_keeps_the_published_residual_form():
    tf_keras.utils.set_random_seed(0)
    block = SASRecBlock(4, heads=1, dropout=0.0)
    x = tf.random.normal([2, 5, 4])
    causal = tf.cast(tf.linalg.band_part(tf.ones([5, 5]), -1, 0), tf.bool)[None]
    y = block(x, attention_mask=causal).numpy()
    # q = LN(x); x' = q + MHA(q, keys/values x); h = LN(x'); y = h + FFN(h).
    q = block.norm_attention(x)
    h = block.norm_ffn(q + block.attention(q, mask=causal, memory=x))
    np.testing.assert_allclose(y, (h + block.ffn_out(block.ffn_in(h))).numpy(), rtol=1e-5, atol=1e-6)
    assert block.ffn_dim == 4  # SASRec's feed-forward keeps the width


def _kernels(block) -> dict[str, np.ndarray]:
    block(tf.zeros([1, 3, block.dim]))
    layers = {"query": block.attention.query, "key_value": block.attention.key_value,
              "output": block.attention.output_projection, "ffn_in": block.ffn_in, "ffn_out": block.ffn_out}
    return {name: layer.kernel.numpy() for name, layer in layers.items()}


def test_the_pre_norm_block_starts_from_glorot_and_sasrec_from_bert():
    # Glorot uniform: std sqrt(2 / (fan_in + fan_out)); BERT's: N(0, 0.02^2) truncated (std 0.0176).
    # The pre-norm block's scale is what lets a masked position read its context from the start.
    tf_keras.utils.set_random_seed(0)
    for name, kernel in _kernels(TransformerBlock(64, heads=2)).items():
        assert kernel.std() == pytest.approx(np.sqrt(2.0 / sum(kernel.shape)), rel=0.1), name
    for name, kernel in _kernels(SASRecBlock(64, heads=2)).items():
        assert kernel.std() == pytest.approx(0.0176, rel=0.1), name
    bert = _kernels(TransformerBlock(64, heads=2, kernel_initializer=BERT_INITIALIZER))
    assert bert["query"].std() == pytest.approx(0.0176, rel=0.1)
    assert not np.allclose(bert["query"], bert["output"])  # a fresh initializer per weight


@pytest.mark.parametrize("layer", [SelfAttention(8, 2, dropout=0.1, name="a"),
                                   SASRecBlock(8, 2, dropout=0.2, adapter_bottleneck=3, name="b"),
                                   TransformerBlock(8, 2, ffn_dim=16, dropout=0.2, name="c"),
                                   TransformerBlock(8, 2, kernel_initializer=BERT_INITIALIZER, name="d")])
def test_config_round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config


def test_seeded_dropout_repeats_under_a_seed_and_compiles_with_xla():
    def draws():
        tf_keras.utils.set_random_seed(3)
        drop = seeded_dropout(0.5)
        step = tf.function(lambda x: drop(x, training=True), jit_compile=True)
        return [step(tf.ones([64])).numpy() for _ in range(2)]

    first, second = draws(), draws()
    np.testing.assert_array_equal(first[0], second[0])   # the same seed, the same masks
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])        # each call draws a fresh mask
    assert set(np.unique(first[0])) == {0.0, 2.0}        # kept units are scaled by 1 / (1 - rate)
