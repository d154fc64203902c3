"""Raw features in, one dense vector per feature out; all preprocessing inside the graph.

A served model receives raw values (string ids, floats, text) by their spec names, so lookups,
normalisation and tokenisation live here rather than in a Python preprocessing step.

Inputs (batch size B):
  categorical, categorical_list, text: tf.string [B] (lists joined by the feature's separator)
  numeric: tf.float32 [B] (NaN = missing, replaced by the training mean)
  dense_vector: tf.float32 [B, dim]
  the domain column: tf.string [B]
  the behaviour sequence ``<item>_history``: tf.string [B, max_length], "" = padding
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable, Protocol

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras

from mdrec.data.hashing import HashedLookup
from mdrec.data.transform import PUNCTUATION, Transform
from mdrec.spec import FeatureSpec, Spec

_EMPTY_VOCAB_PLACEHOLDER = "\x00<empty>"
# Keys of FeatureEncoder.call's output beside the feature names.
DOMAIN_KEY = "__domain__"                   # the line's embedding
PRETRAINED_USER_KEY = "__pretrained_user__"   # the user_feature layer's output


class _HistoryItems(Protocol):
    """History item keys [B, L] -> item vectors [B, L, w] (``ItemEncoder.history_items``)."""

    def __call__(self, keys: tf.Tensor, training: bool | None = None) -> tf.Tensor: ...


class FeatureEncoder(tf_keras.layers.Layer):
    """Embeds every feature of a spec.

    call(inputs) -> dict feature name -> float32 [B, width]; the history (if any) under its name,
    and the domain's embedding under "__domain__". ``domain_index(inputs)`` gives int32 [B].
    """

    def __init__(self, spec: Spec, transform: Transform, domain_embedding_dim: int = 8,
                 embeddings_l2: float = 0.0, user_feature: tf_keras.layers.Layer | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.transform = transform
        # Optional layer user ids [B] -> [B, w] embedded with the user's features (the pretrained
        # user vector of mdrec.transfer); its output is under "__pretrained_user__".
        self.user_feature = user_feature
        # Optional callable history item keys [B, L] -> [B, L, w] replacing the item ID embeddings
        # in the history (an item encoder in content mode: mdrec.layers.item_encoders).
        self.history_items: _HistoryItems | None = None
        regularizer = tf_keras.regularizers.l2(embeddings_l2) if embeddings_l2 else None
        self.lookups: dict[str, tf_keras.layers.StringLookup] = {}
        self.tables: dict[str, tf_keras.layers.Embedding] = {}
        for feature in spec.features:
            if feature.is_categorical and feature.share_embedding_with is None:
                if feature.hash_buckets:  # no vocabulary: hashed ids (mdrec.data.hashing)
                    lookup = HashedLookup(feature.hash_buckets, name=f"{feature.table}_lookup")
                else:
                    vocab = transform.vocabularies[feature.table] or [_EMPTY_VOCAB_PLACEHOLDER]
                    lookup = tf_keras.layers.StringLookup(vocabulary=vocab, mask_token="",
                                                          num_oov_indices=feature.oov_buckets,
                                                          name=f"{feature.table}_lookup")
                self.lookups[feature.table] = lookup
                self.tables[feature.table] = tf_keras.layers.Embedding(
                    lookup.vocabulary_size(), feature.embedding_dim, embeddings_initializer=_init(feature.table),
                    embeddings_regularizer=regularizer, name=f"{feature.table}_embedding")
            elif feature.type == "text":
                vocab = transform.text[feature.name] or [_EMPTY_VOCAB_PLACEHOLDER]
                lookup = tf_keras.layers.StringLookup(vocabulary=vocab, mask_token="", num_oov_indices=1,
                                                      name=f"{feature.name}_tokens")
                self.lookups[feature.name] = lookup
                self.tables[feature.name] = tf_keras.layers.Embedding(
                    lookup.vocabulary_size(), feature.embedding_dim, embeddings_initializer=_init(feature.name),
                    embeddings_regularizer=regularizer, name=f"{feature.name}_embedding")
        self.domains = list(transform.domains)
        self.domain_lookup = tf_keras.layers.StringLookup(vocabulary=self.domains, num_oov_indices=0,
                                                          mask_token=None, name="domain_lookup")
        self.domain_embedding = tf_keras.layers.Embedding(len(self.domains), domain_embedding_dim,
                                                          embeddings_initializer=_init("domain"), name="domain_embedding")

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def domain_index(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        if self.spec.domain.column:
            return tf.cast(self.domain_lookup(inputs[self.spec.domain.column]), tf.int32)
        batch = tf.shape(next(iter(inputs.values())))[0]
        return tf.zeros([batch], tf.int32)

    def _keys(self, feature: FeatureSpec, values: tf.Tensor, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        if feature.scope == "domain" and self.spec.domain.column:
            domain = inputs[self.spec.domain.column]
            keyed = tf.strings.join([domain, values], separator="/")
            return tf.where(tf.equal(values, ""), values, keyed)
        return values

    def ids(self, feature: FeatureSpec, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Row indices int64 [B] of a categorical feature's values in its table (OOV rows included)."""
        return self.lookups[feature.table](self._keys(feature, inputs[feature.name], inputs))

    def embed_ids(self, feature: FeatureSpec, keys: tf.Tensor) -> tf.Tensor:
        """Embedding of already-keyed ids of ``feature``'s table (any shape; "" -> the mask row)."""
        return self.tables[feature.table](self.lookups[feature.table](keys))

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        return self.encode(inputs, self.spec.features, training=training)

    def encode(self, inputs: dict[str, tf.Tensor], features: Iterable[FeatureSpec], *, history: bool = True,
               domain: bool = True, training: bool | None = None) -> dict[str, tf.Tensor]:
        """Embed only ``features`` (and the history / domain if asked): a two-tower model's
        candidate tower reads item features alone, so it needs no user columns. The pretrained
        user vector, if any, comes with the history (it is user behaviour too)."""
        out: dict[str, tf.Tensor] = {}
        for feature in features:
            value = inputs[feature.name]
            if feature.type == "categorical":
                out[feature.name] = self.embed_ids(feature, self._keys(feature, value, inputs))
            elif feature.type == "categorical_list":
                tokens = self._key_tokens(feature, tf.strings.split(value, sep=feature.separator), inputs)
                out[feature.name] = _ragged_mean(self.embed_ids(feature, tokens))
            elif feature.type == "text":
                text = tf.strings.regex_replace(tf.strings.lower(value, encoding="utf-8"), PUNCTUATION, " ")
                tokens = tf.strings.split(text)[:, : feature.length]
                ids = self.lookups[feature.name](tokens)
                out[feature.name] = _ragged_mean(self.tables[feature.name](ids))
            elif feature.type == "numeric":
                out[feature.name] = self._numeric(feature, value)
            else:  # dense_vector
                out[feature.name] = tf.cast(value, tf.float32)
        if history and self.spec.sequence:
            seq = inputs[self.spec.sequence.name]
            item = self.spec.feature(self.spec.sequence.item)
            vectors = self.embed_ids(item, seq) if self.history_items is None \
                else self.history_items(seq, training=training)           # [B, L, d]
            mask = tf.cast(tf.not_equal(seq, ""), tf.float32)[..., None]
            out[self.spec.sequence.name] = tf.reduce_sum(vectors * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        if history and self.user_feature is not None:
            out[PRETRAINED_USER_KEY] = self.user_feature(inputs[self.spec.user_id.name], training=training)
        if domain:
            out[DOMAIN_KEY] = self.domain_embedding(self.domain_index(inputs))
        return out

    def _key_tokens(self, feature: FeatureSpec, tokens: tf.RaggedTensor,
                    inputs: dict[str, tf.Tensor]) -> tf.RaggedTensor:
        if feature.scope == "domain" and self.spec.domain.column:
            # Every list element is keyed by its row's domain: "a|b" in d -> "d/a", "d/b".
            domain = tf.repeat(inputs[self.spec.domain.column], tokens.row_lengths())
            return tokens.with_flat_values(tf.strings.join([domain, tokens.flat_values], separator="/"))
        return tokens

    def _numeric(self, feature: FeatureSpec, value: tf.Tensor) -> tf.Tensor:
        stats = self.transform.numeric[feature.name]
        x = tf.cast(value, tf.float32)
        if feature.transform == "log1p":
            x = tf.math.log1p(tf.maximum(x, 0.0))
        x = tf.where(tf.math.is_nan(x), tf.constant(stats["mean"], tf.float32), x)
        if feature.normalize:
            x = (x - stats["mean"]) / stats["std"]
        return x[:, None]


def _init(name: str) -> tf_keras.initializers.Initializer:
    # One seeded initializer per table (seeded by name) so runs are reproducible table by table.
    return tf_keras.initializers.RandomNormal(stddev=0.05, seed=zlib.crc32(name.encode()) % (2**31))


def _ragged_mean(vectors: tf.RaggedTensor) -> tf.Tensor:
    """Mean over the ragged axis; an empty row gives zeros (not NaN)."""
    total = tf.reduce_sum(vectors, axis=1)
    count = tf.cast(vectors.row_lengths(), tf.float32)[:, None]
    return total / tf.maximum(count, 1.0)
