"""Building blocks of the user encoder: Transformer and NextItNet blocks, and PeterRec's adapters.

All blocks map [B, L, dim] -> [B, L, dim] and keep the width, so they stack. Each block has two
adapter slots (PeterRec's "model patches", inserted serially after each of its two sublayers,
before the residual add); they are empty until ``add_adapters`` is called, and a fresh adapter is
the identity (its up-projection starts at zero), so adding them never changes a pretrained model's
output before fine-tuning.
"""
from __future__ import annotations

from typing import Any

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.layers.attention import Initializer, SelfAttention, fresh_initializer, seeded_dropout, small_normal

# NextItNet's dilation schedule: every residual block holds two dilated causal convolutions, and the
# stack of convolutions runs through 1, 2, 4, 8, then repeats (blocks use (1, 2), (4, 8), (1, 2)...).
NEXTITNET_DILATIONS = (1, 2, 4, 8)


class Adapter(tf_keras.layers.Layer):
    """x + up(gelu(down(x))): a bottleneck residual patch (Houlsby et al. 2019; PeterRec 2020).

    The up-projection is initialised to zero, so a fresh adapter returns its input unchanged.
    """

    def __init__(self, bottleneck: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(bottleneck) < 1:
            raise ValueError(f"adapter bottleneck must be >= 1, got {bottleneck}")
        self.bottleneck = int(bottleneck)

    def build(self, input_shape: tf.TensorShape) -> None:
        width = int(input_shape[-1])
        self.down = tf_keras.layers.Dense(self.bottleneck, name="down",
                                          kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
        self.up = tf_keras.layers.Dense(width, name="up", kernel_initializer="zeros", bias_initializer="zeros")
        self.down.build(input_shape)
        self.up.build(tuple(input_shape[:-1]) + (self.bottleneck,))
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x + self.up(tf.nn.gelu(self.down(x)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bottleneck": self.bottleneck}


class _AdapterSlots(tf_keras.layers.Layer):
    """A block with two optional adapter slots (after each of its sublayers)."""

    def __init__(self, adapter_bottleneck: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.adapter_bottleneck = 0
        self.adapters: list[Adapter] = []
        if adapter_bottleneck:
            self.add_adapters(adapter_bottleneck)

    def add_adapters(self, bottleneck: int) -> None:
        if self.adapters:
            raise ValueError(f"block '{self.name}' already has adapters")
        self.adapters = [Adapter(bottleneck, name="adapter_0"), Adapter(bottleneck, name="adapter_1")]
        self.adapter_bottleneck = int(bottleneck)

    def _patch(self, slot: int, x: tf.Tensor) -> tf.Tensor:
        return self.adapters[slot](x) if self.adapters else x


class TransformerBlock(_AdapterSlots):
    """Pre-norm Transformer encoder block: x + MHA(LN(x)), then + FFN(LN(.)).

    call(x [B, L, dim], attention_mask bool [B or 1, L, L] (query, key) or None, training) -> [B, L, dim].

    ``kernel_initializer`` (every projection's) is Glorot's, not BERT's N(0, 0.02^2): a masked
    position reads its context only through attention, and with 0.02 in both the query and the key
    weights (and in the value and output ones) that path starts at a saddle: mlm on MovieLens-1M
    learned only popularity for its first 6 epochs, against 2 with Glorot's (README, "User-sequence
    encoder").
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int | None = None, dropout: float = 0.1,
                 adapter_bottleneck: int = 0, kernel_initializer: Initializer = "glorot_uniform",
                 **kwargs: Any) -> None:
        super().__init__(adapter_bottleneck=adapter_bottleneck, **kwargs)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads = int(dim), int(heads)
        self.ffn_dim = int(ffn_dim or 4 * dim)
        self.dropout = float(dropout)
        self.norm_attention = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="norm_attention")
        self.attention = SelfAttention(self.dim, self.heads, dropout=self.dropout,
                                       kernel_initializer=kernel_initializer, name="attention")
        self.norm_ffn = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="norm_ffn")
        self.ffn_in = tf_keras.layers.Dense(self.ffn_dim, activation="gelu",
                                            kernel_initializer=fresh_initializer(kernel_initializer), name="ffn_in")
        self.ffn_out = tf_keras.layers.Dense(self.dim, kernel_initializer=fresh_initializer(kernel_initializer),
                                             name="ffn_out")
        self.drop = seeded_dropout(self.dropout)

    def call(self, x: tf.Tensor, attention_mask: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        h = self.norm_attention(x)
        h = self.attention(h, mask=attention_mask, training=training)
        x = x + self._patch(0, self.drop(h, training=training))
        h = self.ffn_out(self.ffn_in(self.norm_ffn(x)))
        return x + self._patch(1, self.drop(h, training=training))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "adapter_bottleneck": self.adapter_bottleneck,
                # One identifier for every projection: the attention's (a copy) is the block's.
                "kernel_initializer": self.attention.get_config()["kernel_initializer"]}


class SASRecBlock(_AdapterSlots):
    """SASRec's self-attention block (Kang & McAuley, ICDM 2018) as its public reproductions run it
    (pmixer/SASRec.pytorch; SASRec+ of Klenitskiy & Vasilev, RecSys 2023):

        q = LN(x);  x = q + MHA(queries q, keys and values x)
        h = LN(x);  x = h + W2 drop(ReLU(W1 h))          (W1: dim -> ffn_dim, W2: ffn_dim -> dim)

    The residuals start from the normalised input, and the keys read the un-normalised one.
    call(x [B, L, dim], attention_mask bool [B or 1, L, L] (query, key) or None, training) -> [B, L, dim].
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int | None = None, dropout: float = 0.1,
                 adapter_bottleneck: int = 0, **kwargs: Any) -> None:
        super().__init__(adapter_bottleneck=adapter_bottleneck, **kwargs)
        self.dim, self.heads = int(dim), int(heads)
        self.ffn_dim = int(ffn_dim or dim)
        self.dropout = float(dropout)
        self.norm_attention = tf_keras.layers.LayerNormalization(epsilon=1e-8, name="norm_attention")
        self.attention = SelfAttention(self.dim, self.heads, dropout=self.dropout, name="attention")
        self.norm_ffn = tf_keras.layers.LayerNormalization(epsilon=1e-8, name="norm_ffn")
        self.ffn_in = tf_keras.layers.Dense(self.ffn_dim, activation="relu", kernel_initializer=small_normal(),
                                            name="ffn_in")
        self.ffn_out = tf_keras.layers.Dense(self.dim, kernel_initializer=small_normal(), name="ffn_out")
        self.drop_hidden = seeded_dropout(self.dropout)
        self.drop = seeded_dropout(self.dropout)

    def call(self, x: tf.Tensor, attention_mask: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        q = self.norm_attention(x)
        x = q + self._patch(0, self.attention(q, mask=attention_mask, training=training, memory=x))
        h = self.norm_ffn(x)
        f = self.ffn_out(self.drop_hidden(self.ffn_in(h), training=training))
        return h + self._patch(1, self.drop(f, training=training))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "adapter_bottleneck": self.adapter_bottleneck}


class NextItNetBlock(_AdapterSlots):
    """NextItNet's residual block (Yuan et al., WSDM 2019; PeterRec's backbone).

    x + ReLU(LN(conv_2d(ReLU(LN(conv_d(x)))))), both convolutions causal (left-padded) with kernel
    ``kernel_size`` and dilations ``dilation`` and ``2 * dilation``: position t never sees t + 1.
    call(x [B, L, dim], training) -> [B, L, dim].
    """

    def __init__(self, dim: int, dilation: int, kernel_size: int = 3, dropout: float = 0.1,
                 adapter_bottleneck: int = 0, **kwargs: Any) -> None:
        super().__init__(adapter_bottleneck=adapter_bottleneck, **kwargs)
        self.dim, self.dilation, self.kernel_size = int(dim), int(dilation), int(kernel_size)
        self.dropout = float(dropout)
        self.conv_0 = tf_keras.layers.Conv1D(self.dim, self.kernel_size, padding="causal",
                                             dilation_rate=self.dilation, name="conv_0")
        self.norm_0 = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="norm_0")
        self.conv_1 = tf_keras.layers.Conv1D(self.dim, self.kernel_size, padding="causal",
                                             dilation_rate=2 * self.dilation, name="conv_1")
        self.norm_1 = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="norm_1")
        self.drop = seeded_dropout(self.dropout)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        h = tf.nn.relu(self.norm_0(self._patch(0, self.conv_0(x))))
        h = tf.nn.relu(self.norm_1(self._patch(1, self.conv_1(h))))
        return x + self.drop(h, training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "dilation": self.dilation,
                "kernel_size": self.kernel_size, "dropout": self.dropout,
                "adapter_bottleneck": self.adapter_bottleneck}


def nextitnet_dilations(blocks: int) -> list[int]:
    """The first dilation of each block, so the convolutions run 1, 2, 4, 8, 1, 2, 4, 8, ..."""
    firsts = NEXTITNET_DILATIONS[::2]
    return [firsts[i % len(firsts)] for i in range(blocks)]
