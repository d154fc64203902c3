"""The pretraining model: a user encoder and its objective's loss.

    model = PretrainModel(encoder, "autoregressive", negatives=0, seed=0)
    loss = model.training_loss({"ids": windows})     # int32 [B, W], right-padded item rows

Windows (:func:`window_width`): next-item objectives read L + 1 items (position t of the first L
predicts item t + 1, so no item is wasted); mlm and contrastive-only read L. Objectives (the recipes in
:mod:`mdrec.pretraining.objectives`):
  autoregressive  every position predicts the next item (SASRec with a transformer, NextItNet /
                  PeterRec with dilated convolutions), softmax cross-entropy
  mlm             the masked positions predict their item (BERT4Rec, ShopperBERT), plus each
                  masked item's attributes (``attribute_weight``); ``mask_last``: the share of
                  windows whose newest item is always masked (the next-item query's shape)
  contrastive     ``next_item_weight`` x the autoregressive loss plus InfoNCE between the user
                  vectors of the window and of an augmented copy (CL4SRec's augmentations; the
                  window itself is one view, so the step costs one extra forward pass); with
                  ``next_item_weight`` 0, InfoNCE between two augmented views only (CLUE)
Item scores are the encoder's own (:meth:`UserEncoder.item_scores`: state . item embedding + item
bias, input and output embeddings tied), so what pretraining trains is what export and transfer read.
"""
from __future__ import annotations

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.models.user_encoder import SPECIAL_ROWS, TIMES, UserEncoder
from mdrec.pretraining import objectives as obj
from mdrec.pretraining.settings import OBJECTIVES

IDS = "ids"


def window_width(max_length: int, next_item: bool) -> int:
    """Items per training window: L + 1 when every position predicts the next item, else L."""
    return int(max_length) + (1 if next_item else 0)


class PretrainModel(tf_keras.Model):
    """The encoder plus its objective. ``training_loss(x)`` is the batch loss for
    :func:`mdrec.training.loop.fit` (x: {"ids": int32 [B, W]} and "times" int64 [B, W] with time
    buckets); ``call`` gives the user vectors of raw item sequences."""

    autograph = False  # calls branch on Python values only (mdrec.training.inference.uses_autograph)

    def __init__(self, encoder: UserEncoder, objective: str, *, negatives: int = 0, mask_rate: float = 0.2,
                 temperature: float = 0.1, attribute_weight: float = 1.0, next_item_weight: float = 1.0,
                 mask_last: float = 0.0, exclude_seen: bool = False, crop: float = 0.6, mask: float = 0.3,
                 reorder: float = 0.6, targets_per_batch: float = 0.0, seed: int = 0, **kwargs):
        """``targets_per_batch``: 0, a batch's item loss is the mean over its targets; > 0, their sum
        divided by this (the epoch's mean targets per batch), so every target of an epoch weighs the
        same whatever the length of its batch's windows (mdrec.pretraining.settings.LOSS_WEIGHTINGS)."""
        super().__init__(**kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        next_item = objective == "autoregressive" or (objective == "contrastive" and next_item_weight > 0)
        if next_item and not encoder.causal:
            raise ValueError(f"{objective} pretraining predicts the next item from the past: it needs a causal encoder")
        if objective == "mlm" and encoder.causal:
            raise ValueError("mlm predicts a masked item from both sides: it needs a bidirectional encoder")
        self.encoder = encoder
        self.objective = objective
        self.negatives, self.mask_rate, self.temperature = int(negatives), float(mask_rate), float(temperature)
        self.mask_last, self.exclude_seen = float(mask_last), bool(exclude_seen)
        self.attribute_weight = float(attribute_weight)
        self.targets_per_batch = float(targets_per_batch)
        self.next_item_weight = float(next_item_weight) if objective == "contrastive" else 1.0
        self.augmentation = {"crop": float(crop), "mask": float(mask), "reorder": float(reorder)}
        self.rng = tf.random.Generator.from_seed(seed)  # masks, negatives, views: resumes with the checkpoint
        dim = encoder.dim
        self.projection: list[tf_keras.layers.Dense] = []
        if objective == "contrastive":
            self.projection = [tf_keras.layers.Dense(dim, activation="relu", name="projection_0"),
                               tf_keras.layers.Dense(dim, name="projection_1")]
        self.attribute_heads: dict[str, tf_keras.layers.Dense] = {}
        if objective == "mlm":
            for name, table in encoder.attribute_config.items():
                self.attribute_heads[name] = tf_keras.layers.Dense(len(table["vocabulary"]) + SPECIAL_ROWS + 1,
                                                                   name=f"{name}_head")

    def call(self, inputs, training: bool = False) -> tf.Tensor:
        return self.encoder(inputs, training=training)

    @property
    def predicts_items(self) -> bool:
        """Whether the model trains the encoder's item head (contrastive only with a next-item weight)."""
        return self.objective != "contrastive" or self.next_item_weight > 0

    @property
    def window(self) -> int:
        """Items per training window (:func:`window_width`)."""
        return window_width(self.encoder.max_length, self.predicts_items and self.objective != "mlm")

    def build_variables(self, sample: dict) -> None:
        self.encoder.build_variables()
        for layer in self.projection:
            layer.build([None, self.encoder.dim])
        for head in self.attribute_heads.values():
            head.build([None, self.encoder.dim])

    def item_loss(self, states: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor,
                  window: tf.Tensor | None = None) -> tf.Tensor:
        """Mean cross-entropy of ``targets`` (item rows [B, T]) from ``states`` [B, T, dim] where
        ``weights`` [B, T] is 1: a full or sampled softmax over the vocabulary; with ``window``
        (the item rows [B, W] the targets come from) and ``exclude_seen``, the full softmax leaves
        the window's other items out (see :func:`objectives.seen_excluded_loss`)."""
        encoder = self.encoder
        table, bias = encoder.item_output_table(), encoder.item_bias
        weights = weights * tf.cast(targets >= SPECIAL_ROWS, tf.float32)
        items = tf.maximum(targets - SPECIAL_ROWS, 0)
        if window is not None and self.exclude_seen and obj.full_softmax(self.negatives, encoder.num_items):
            losses = obj.seen_excluded_loss(states, items, table, bias, obj.window_items(window, encoder.num_items))
            return self.target_mean(losses, weights)
        losses = obj.item_softmax_loss(tf.reshape(states, [-1, encoder.dim]), tf.reshape(items, [-1]), table, bias,
                                       self.negatives, self.rng)
        return self.target_mean(losses, tf.reshape(weights, [-1]))

    def target_mean(self, losses: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """The batch's loss from per-target ``losses`` where ``weights`` is 1 (any equal shapes)."""
        if self.targets_per_batch > 0:
            return tf.reduce_sum(losses * tf.cast(weights, losses.dtype)) / self.targets_per_batch
        return obj.weighted_mean(losses, weights)

    @tf.autograph.experimental.do_not_convert  # plain Python control flow only: skip autograph's slow rewrite
    def training_loss(self, x: dict, y=None) -> tf.Tensor:
        encoder = self.encoder
        ids = tf.cast(x[IDS], tf.int32)
        times = tf.cast(x[TIMES], tf.int64) if encoder.time_buckets and TIMES in x else None
        if self.objective == "mlm":
            return self._mlm_loss(ids, times)
        if not self.predicts_items:  # contrastive only (CLUE): two augmented views of the window
            return self._contrastive_loss(self._view(ids, times), self._view(ids, times))
        inputs, targets, weights = obj.next_item_pairs(ids)
        times = times[:, :-1] if times is not None else None
        states, cls = encoder.encode_ids(inputs, times, training=True)
        loss = self.next_item_weight * self.item_loss(states, targets, weights, window=ids)
        if self.objective == "contrastive":
            # The sequence itself is one view (its states are computed anyway), an augmented copy the other.
            loss += self._contrastive_loss(encoder.pool(states, cls, inputs), self._view(inputs, times))
        return loss

    def _mlm_loss(self, ids: tf.Tensor, times: tf.Tensor | None) -> tf.Tensor:
        encoder = self.encoder
        inputs, positions, targets, weights = obj.mlm_mask(ids, self.mask_rate, self.rng, encoder.mask_id,
                                                           last=self.mask_last)
        states, _ = encoder.encode_ids(inputs, times, training=True)
        picked = tf.gather(states, positions, batch_dims=1)  # [B, K, dim]
        loss = self.item_loss(picked, targets, weights, window=ids)
        for name, head in self.attribute_heads.items():
            values = encoder.attribute_ids(name, targets)
            known = weights * tf.cast(values >= SPECIAL_ROWS, tf.float32)  # items with no value are not targets
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=values, logits=head(picked))
            loss += self.attribute_weight * self.target_mean(ce, known)
        return loss

    def _view(self, ids: tf.Tensor, times: tf.Tensor | None) -> tf.Tensor:
        """The user vector of one augmented view of ``ids`` (crop, mask or reorder)."""
        view, view_times = obj.augment(ids, self.rng, self.encoder.mask_id, times=times, **self.augmentation)
        return self.encoder.vectors_of_ids(view, view_times, training=True)

    def _contrastive_loss(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        """Symmetric InfoNCE of two views' user vectors [B, dim], after the projection MLP."""
        for layer in self.projection:
            a, b = layer(a), layer(b)
        return tf.reduce_mean(obj.info_nce(a, b, self.temperature))
