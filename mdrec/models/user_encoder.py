"""The user encoder: a user's behaviour sequence (raw item ids) in, one user vector out.

    encoder = UserEncoder(item_vocabulary, architecture="transformer", dim=64, layers=2, heads=2,
                          max_length=200, causal=True, attributes={"category": {...}})
    vectors = encoder({"items": tf.constant([["i1", "i7", ""]])})        # float32 [B, dim]
    scores = encoder.item_scores(vectors)                               # float32 [B, V]: the next item
    states = encoder.sequence_output({"items": ...})                    # float32 [B, L, dim]

Inputs: ``items`` tf.string [B, L] (L <= max_length), oldest first, right-padded with "". Items
unseen in pretraining map to one OOV row. Everything else is inside the model: the item vocabulary
(a StringLookup), the item -> attribute tables (e.g. category, from the spec's item features; a
caller passes item ids only) and, only when ``time_buckets`` > 0, an extra input ``times`` int64
[B, L] (unix seconds) whose gaps between consecutive events are embedded in log2-hour buckets.

Token embedding = item + attributes + position (+ time bucket). Item rows: 0 padding, 1 OOV,
2 .. V+1 the vocabulary (most frequent first), V+2 the [MASK] token of masked-item pretraining; a
masked position also gets the [MASK] row of every attribute table, so its category cannot leak.

Architectures:
  transformer  self-attention blocks, bidirectional or causal (``causal=True``); ``block``:
               ``sasrec`` (the default of a causal encoder: SASRec's block as its reproductions run
               it, item embeddings scaled by sqrt(dim), no embedding norm) or ``prenorm`` (the
               default of a bidirectional one: BERT-like pre-norm blocks with a GELU feed-forward
               of 4 x dim, the summed embeddings layer-normalised). Bidirectional positions count
               from the newest item (1 = the most recent), so the newest item has one position
               embedding whatever the length; causal ones count from the oldest, so no later item
               changes an earlier position.
  nextitnet    NextItNet / PeterRec: residual blocks of dilated causal 1-D convolutions (dilations
               1, 2, 4, 8 repeated); no position embeddings (the convolutions see order).
Pooling (the user vector):
  last  the state of the last non-padding position (causal encoders: it has read everything and
        predicts the next item; the default of a causal encoder)
  mask  the state of a [MASK] appended after the history (bidirectional encoders, the default:
        what masked-item pretraining predicts the next item from; a full row drops its oldest item
        to make room)
  cls   a learned [CLS] token prepended (bidirectional transformer only); its final state
  mean  masked mean of the final states over the non-padding positions
``last`` and ``mask`` are the next-item representations: ``item_scores(vector)`` = vector . item
embedding + item bias (the tied output layer pretraining trains), so the user vector that transfer
and export use is exactly the one the item head scores with. An empty sequence gives a finite vector
(the [CLS] state, zeros for mean, the padding state for last, the lone [MASK]'s state for mask);
:func:`load_pretrained`'s ``user_vectors`` returns zeros and a mask for such users.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.layers.attention import seeded_dropout
from mdrec.layers.sequence import NextItNetBlock, SASRecBlock, TransformerBlock, nextitnet_dilations

ARCHITECTURES = ("transformer", "nextitnet")
POOLINGS = ("last", "mask", "cls", "mean")
BLOCKS = ("sasrec", "prenorm")
NEXT_ITEM_POOLINGS = ("last", "mask")  # the states the item head is trained on
SPECIAL_ROWS = 2  # padding "" (row 0) and the OOV bucket (row 1) before the vocabulary
ITEMS = "items"
TIMES = "times"
_EMPTY_VOCAB_PLACEHOLDER = "\x00<empty>"


def default_block(causal: bool) -> str:
    """SASRec's block for causal encoders, the pre-norm (BERT-like) block for bidirectional ones."""
    return "sasrec" if causal else "prenorm"


def default_pooling(architecture: str, causal: bool) -> str:
    """The next-item representation: the last state (causal), else an appended [MASK]'s state."""
    return "last" if causal or architecture == "nextitnet" else "mask"


def _table_initializer() -> tf_keras.initializers.Initializer:
    """A fresh initializer per table (one instance reused would repeat its values)."""
    return tf_keras.initializers.TruncatedNormal(stddev=0.02)


def _checked_arguments(architecture: str, causal: bool | None, pooling: str | None, block: str | None, *,
                       dim: int, layers: int, heads: int, max_length: int, time_buckets: int
                       ) -> tuple[bool, str, str]:
    """Validate the encoder's arguments and fill in the defaults that depend on them.

    Returns (causal, pooling, block); raises ValueError on the first argument that does not fit.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    causal = architecture == "nextitnet" if causal is None else bool(causal)
    if architecture == "nextitnet" and not causal:
        raise ValueError("nextitnet is causal by construction (causal=False is not available)")
    pooling = pooling or default_pooling(architecture, causal)
    _check_pooling(pooling, causal, max_length)
    for name, value in (("dim", dim), ("layers", layers), ("heads", heads), ("max_length", max_length)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    block = block or default_block(causal)
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
    if architecture == "transformer" and dim % heads:
        raise ValueError(f"dim {dim} must be divisible by heads {heads}")
    if time_buckets < 0:
        raise ValueError(f"time_buckets must be >= 0, got {time_buckets}")
    return causal, pooling, block


def _check_pooling(pooling: str, causal: bool, max_length: int) -> None:
    """A pooling must exist and read states that the encoder's direction gives (see the module doc)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "cls" and causal:
        raise ValueError("a [CLS] token needs a bidirectional encoder (a causal [CLS] in front sees "
                         "nothing); use pooling 'last' or 'mean'")
    if pooling == "last" and not causal:
        raise ValueError("pooling 'last' is for causal encoders; a bidirectional one uses 'mask', 'cls' or "
                         "'mean'")
    if pooling == "mask" and causal:
        raise ValueError("pooling 'mask' is for bidirectional encoders (a causal encoder's last state "
                         "already predicts the next item); use 'last'")
    if pooling == "mask" and int(max_length) < 2:
        raise ValueError("pooling 'mask' needs max_length >= 2 (the history and the [MASK])")


class UserEncoder(tf_keras.Model):
    """call({"items": tf.string [B, L]}, training=False) -> user vector float32 [B, dim].

    ``attributes``: name -> {"vocabulary": [values], "items": [the value of each vocabulary item,
    "" where unknown]} (as :func:`mdrec.pretraining.data.attribute_tables` builds them).
    """

    def __init__(self, item_vocabulary: Sequence[str], *, architecture: str = "transformer", dim: int = 64,
                 layers: int = 2, heads: int = 2, max_length: int = 50, pooling: str | None = None,
                 causal: bool | None = None, dropout: float = 0.1,
                 attributes: dict[str, dict[str, list[str]]] | None = None, time_buckets: int = 0,
                 kernel_size: int = 3, adapter_bottleneck: int = 0, block: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        causal, pooling, block = _checked_arguments(architecture, causal, pooling, block, dim=dim, layers=layers,
                                                    heads=heads, max_length=max_length, time_buckets=time_buckets)
        self.item_vocabulary = [str(v) for v in item_vocabulary]
        self.architecture = architecture
        self.block = block if architecture == "transformer" else None
        self.dim, self.num_layers, self.heads = int(dim), int(layers), int(heads)
        self.max_length = int(max_length)
        self.pooling, self.causal, self.dropout_rate = pooling, causal, float(dropout)
        self.time_buckets, self.kernel_size = int(time_buckets), int(kernel_size)
        self.attribute_config = {name: {"vocabulary": [str(v) for v in table["vocabulary"]],
                                        "items": [str(v) for v in table["items"]]}
                                 for name, table in (attributes or {}).items()}
        # Checkpoints and SavedModels address variables by attribute name: the steps below assign
        # the sublayers in a fixed order under fixed names; keep both when changing them.
        self._build_item_tables()
        self._build_token_embeddings()
        self._build_blocks(adapter_bottleneck)
        self._build_head()

    def _build_item_tables(self) -> None:
        """The item lookup (raw id -> row), the item embedding [V + 3, dim] (padding, OOV, the
        vocabulary, [MASK]) and per attribute an embedding with its item row -> attribute row map."""
        self.lookup = tf_keras.layers.StringLookup(vocabulary=self.item_vocabulary or [_EMPTY_VOCAB_PLACEHOLDER],
                                                   mask_token="", num_oov_indices=1, name="item_lookup")
        self.num_items = len(self.item_vocabulary) or 1
        self.mask_id = SPECIAL_ROWS + self.num_items
        self.item_embedding = tf_keras.layers.Embedding(self.mask_id + 1, self.dim,
                                                        embeddings_initializer=_table_initializer(),
                                                        name="item_embedding")
        self.attribute_embeddings: dict[str, tf_keras.layers.Embedding] = {}
        self._attribute_rows: dict[str, tf.Tensor] = {}
        for name, table in self.attribute_config.items():
            if len(table["items"]) != len(self.item_vocabulary):
                raise ValueError(f"attribute '{name}' gives {len(table['items'])} item values for "
                                 f"{len(self.item_vocabulary)} items")
            index = {value: SPECIAL_ROWS + i for i, value in enumerate(table["vocabulary"])}
            mask_row = SPECIAL_ROWS + len(table["vocabulary"])
            rows = [0, 1] + [index.get(v, 1) for v in table["items"]]
            rows += [1] * (self.mask_id - len(rows)) + [mask_row]  # (the empty-vocabulary placeholder)
            self._attribute_rows[name] = tf.constant(np.asarray(rows, np.int32))
            self.attribute_embeddings[name] = tf_keras.layers.Embedding(
                mask_row + 1, self.dim, embeddings_initializer=_table_initializer(), name=f"{name}_embedding")

    def _build_token_embeddings(self) -> None:
        """What is added to the item and attribute rows of a token (positions [max_length + 2, dim]
        for a transformer, log2-hour gap buckets [time_buckets + 2, dim] when asked for), then the
        norm and dropout of the sum."""
        self.position_embedding = None
        if self.architecture == "transformer":
            self.position_embedding = tf_keras.layers.Embedding(self.max_length + 2, self.dim,
                                                                embeddings_initializer=_table_initializer(),
                                                                name="position_embedding")
        self.time_embedding = (tf_keras.layers.Embedding(self.time_buckets + 2, self.dim,
                                                         embeddings_initializer=_table_initializer(),
                                                         name="time_embedding") if self.time_buckets else None)
        # SASRec scales the item embedding and leaves the sum unnormalised; the others normalise it.
        self.embedding_norm = (None if self.block == "sasrec" else
                               tf_keras.layers.LayerNormalization(epsilon=1e-6, name="embedding_norm"))
        self.embedding_dropout = seeded_dropout(self.dropout_rate)

    def _build_blocks(self, adapter_bottleneck: int) -> None:
        """``num_layers`` blocks [B, L, dim] -> [B, L, dim] named block_0, block_1, ...: attention
        blocks and a final norm (transformer), or dilated convolutions and no final norm (nextitnet)."""
        if self.architecture == "transformer":
            kind = SASRecBlock if self.block == "sasrec" else TransformerBlock
            self.blocks = [kind(self.dim, self.heads, dropout=self.dropout_rate, adapter_bottleneck=adapter_bottleneck,
                                name=f"block_{i}") for i in range(self.num_layers)]
            self.final_norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        else:
            self.blocks = [NextItNetBlock(self.dim, dilation, kernel_size=self.kernel_size, dropout=self.dropout_rate,
                                          adapter_bottleneck=adapter_bottleneck, name=f"block_{i}")
                           for i, dilation in enumerate(nextitnet_dilations(self.num_layers))]
            self.final_norm = None

    def _build_head(self) -> None:
        """The [CLS] token [dim] (``cls`` pooling only) and the item bias [V] of the tied output
        layer (``item_scores``)."""
        self.cls = (self.add_weight("cls", shape=[self.dim], initializer=_table_initializer())
                    if self.pooling == "cls" else None)
        self.item_bias = self.add_weight("item_bias", shape=[self.num_items], initializer="zeros")

    # ---- ids ------------------------------------------------------------------------------------
    @property
    def attribute_names(self) -> list[str]:
        return list(self.attribute_config)

    def item_ids(self, items: tf.Tensor) -> tf.Tensor:
        """Raw item ids (tf.string, any shape) -> rows int32: 0 padding, 1 OOV, 2.. the vocabulary."""
        return tf.cast(self.lookup(items), tf.int32)

    def attribute_ids(self, name: str, ids: tf.Tensor) -> tf.Tensor:
        """Item rows -> the items' rows in attribute ``name``'s table (0 pad, 1 unknown, mask -> mask)."""
        return tf.gather(self._attribute_rows[name], ids)

    def item_output_table(self) -> tf.Tensor:
        """The vocabulary items' embeddings [V, dim] (rows 2 .. V+1; the tied output layer)."""
        return self.item_embedding.embeddings[SPECIAL_ROWS:SPECIAL_ROWS + self.num_items]

    def item_scores(self, vectors: tf.Tensor) -> tf.Tensor:
        """Next-item scores of every vocabulary item [n, V] from user vectors [n, dim] (``last`` or
        ``mask`` pooling): vector . item embedding + item bias."""
        return tf.matmul(vectors, self.item_output_table(), transpose_b=True) + self.item_bias

    # ---- encoding -------------------------------------------------------------------------------
    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.vectors_of_ids(self.item_ids(inputs[ITEMS]), self._times(inputs), training=training)

    def vectors_of_ids(self, ids: tf.Tensor, times: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        """User vectors [B, dim] of item rows int [B, L] (right-padded), as ``call`` pools them."""
        ids = tf.cast(ids, tf.int32)
        if self.pooling == "mask":
            ids, times = self.append_mask(ids, times)
        states, cls = self.encode_ids(ids, times, training=training)
        return self.pool(states, cls, ids)

    def append_mask(self, ids: tf.Tensor, times: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Item rows [B, L] -> the same width with [MASK] after each row's last item; a full row
        drops its oldest item first. The [MASK] gets the last event's time (a zero gap)."""
        ids = tf.cast(ids, tf.int32)
        width = tf.shape(ids)[1]
        count = tf.reduce_sum(tf.cast(tf.not_equal(ids, 0), tf.int32), axis=1)
        drop = tf.maximum(count - (width - 1), 0)  # 1 for a full row
        source = tf.minimum(drop[:, None] + tf.range(width)[None, :], width - 1)
        kept = count - drop
        position = tf.range(width)[None, :]
        shifted = tf.where(position < kept[:, None], tf.gather(ids, source, batch_dims=1), 0)
        out = tf.where(tf.equal(position, kept[:, None]), self.mask_id, shifted)
        if times is not None:
            times = tf.gather(times, source, batch_dims=1)
            last = tf.gather(times, tf.maximum(kept - 1, 0), batch_dims=1)
            times = tf.where(tf.equal(position, kept[:, None]), last[:, None], times)
        return out, times

    def sequence_output(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Per-position final states float32 [B, L, dim] (the [CLS] position left out)."""
        states, _ = self.encode_ids(self.item_ids(inputs[ITEMS]), self._times(inputs), training=training)
        return states

    def _times(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor | None:
        if not self.time_buckets:
            return None
        if TIMES not in inputs:
            raise ValueError(f"this encoder embeds time buckets: it needs a '{TIMES}' input (int64 unix seconds "
                             f"[B, L]) beside '{ITEMS}'")
        return tf.cast(inputs[TIMES], tf.int64)

    def encode_ids(self, ids: tf.Tensor, times: tf.Tensor | None = None, training: bool = False
                   ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Item rows int [B, L] -> (final states [B, L, dim], the [CLS] state [B, dim] or None)."""
        ids = tf.cast(ids, tf.int32)
        valid = tf.not_equal(ids, 0)
        mask = tf.cast(valid, tf.float32)[..., None]
        x = self.item_embedding(ids) * (np.sqrt(self.dim) if self.block == "sasrec" else 1.0)
        for name, table in self.attribute_embeddings.items():
            x += table(self.attribute_ids(name, ids))
        if self.position_embedding is not None:
            length = tf.shape(ids)[1]
            check = tf.debugging.assert_less_equal(
                length, self.max_length,
                message=f"the sequence is longer than the encoder's max_length {self.max_length}: pass the last "
                        f"{self.max_length} items")
            with tf.control_dependencies([check]):
                counts = tf.cast(valid, tf.int32)
                # causal: 1 = oldest; bidirectional: 1 = newest (count of valid positions from the right).
                position = tf.cumsum(counts, axis=1) if self.causal else tf.cumsum(counts, axis=1, reverse=True)
                x += self.position_embedding(position * counts)
        if self.time_embedding is not None and times is not None:
            x += self.time_embedding(self._time_buckets(times, valid))
        x = x if self.embedding_norm is None else self.embedding_norm(x)
        x = self.embedding_dropout(x, training=training) * mask
        cls_state = None
        if self.architecture == "transformer":
            keys = valid
            if self.cls is not None:
                batch = tf.shape(ids)[0]
                x = tf.concat([tf.tile(self.cls[None, None, :], [batch, 1, 1]), x], axis=1)
                keys = tf.concat([tf.ones([batch, 1], tf.bool), valid], axis=1)
            length = tf.shape(keys)[1]
            if self.causal and self.cls is None:
                # Right padding: a valid query's earlier keys are all valid, so the causal band is the
                # whole mask ([1, L, L], broadcast over the batch); padding queries see valid keys.
                attention = tf.cast(tf.linalg.band_part(tf.ones([length, length]), -1, 0), tf.bool)[None]
            else:
                attention = tf.tile(keys[:, None, :], [1, length, 1])
                if self.causal:
                    attention = tf.logical_and(attention, tf.cast(
                        tf.linalg.band_part(tf.ones([length, length]), -1, 0), tf.bool)[None])
                # A query with no valid key (a padding row of an empty sequence) attends to itself.
                attention = tf.logical_or(attention, tf.eye(length, dtype=tf.bool)[None])
            for block in self.blocks:
                x = block(x, attention_mask=attention, training=training)
            x = self.final_norm(x)
            if self.cls is not None:
                cls_state, x = x[:, 0], x[:, 1:]
        else:
            for block in self.blocks:
                x = block(x, training=training)
        return x, cls_state

    def _time_buckets(self, times: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        # 0 padding; 1 the first event; 2 + floor(log2(1 + hours since the previous event)), capped.
        previous = tf.concat([times[:, :1], times[:, :-1]], axis=1)
        hours = tf.cast(tf.maximum(times - previous, 0), tf.float32) / 3600.0
        bucket = tf.minimum(tf.cast(tf.floor(tf.math.log(1.0 + hours) / np.log(2.0)), tf.int32), self.time_buckets - 1)
        first = tf.equal(tf.range(tf.shape(times)[1]), 0)[None, :]
        bucket = tf.where(first, 1, 2 + bucket)
        return tf.where(valid, bucket, 0)

    def pool(self, states: tf.Tensor, cls: tf.Tensor | None, ids: tf.Tensor) -> tf.Tensor:
        """The user vector [B, dim] from the final states (see the module doc; for ``mask`` the ids
        are the ones with the [MASK] appended, so it is the last non-padding position as for ``last``)."""
        valid = tf.not_equal(ids, 0)
        if self.pooling == "cls":
            return cls

        if self.pooling == "mean":
            mask = tf.cast(valid, states.dtype)[..., None]
            return tf.reduce_sum(states * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        last = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.int32), axis=1) - 1, 0)
        return tf.gather(states, last, axis=1, batch_dims=1)

    # ---- transfer -------------------------------------------------------------------------------
    def add_adapters(self, bottleneck: int) -> None:
        """PeterRec's model patches: two bottleneck adapters (down, GELU, up, added back) in every
        block. Fresh adapters are the identity (zero up-projection)."""
        for block in self.blocks:
            block.add_adapters(bottleneck)

    @property
    def adapter_bottleneck(self) -> int:
        """The adapters' bottleneck width (0: no adapters)."""
        return self.blocks[0].adapter_bottleneck

    @property
    def adapter_weights(self) -> list[tf.Variable]:
        """The adapters' variables (empty before ``add_adapters``, and until the first call builds them)."""
        return [v for block in self.blocks for adapter in block.adapters for v in adapter.weights]

    @property
    def norm_weights(self) -> list[tf.Variable]:
        """Every layer normalisation's scale and offset."""
        return [v for layer in self._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, tf_keras.layers.LayerNormalization) for v in layer.weights]

    # ---- config ---------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"item_vocabulary": list(self.item_vocabulary), "architecture": self.architecture, "dim": self.dim,
                "layers": self.num_layers, "heads": self.heads, "max_length": self.max_length,
                "pooling": self.pooling, "causal": self.causal, "dropout": self.dropout_rate,
                "attributes": self.attribute_config, "time_buckets": self.time_buckets,
                "kernel_size": self.kernel_size, "adapter_bottleneck": self.adapter_bottleneck, "block": self.block,
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "UserEncoder":
        config = dict(config)
        return cls(config.pop("item_vocabulary"), **config)

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The serving inputs: items tf.string [None, max_length] (and times int64 with time buckets)."""
        sig = {ITEMS: tf.TensorSpec([None, self.max_length], tf.string, name=ITEMS)}
        if self.time_buckets:
            sig[TIMES] = tf.TensorSpec([None, self.max_length], tf.int64, name=TIMES)
        return sig

    def build_variables(self) -> None:
        """Create every variable (a call on one empty row)."""
        sample = {ITEMS: tf.constant([[""] * self.max_length])}
        if self.time_buckets:
            sample[TIMES] = tf.zeros([1, self.max_length], tf.int64)
        self(sample, training=False)

