"""The lifelong model: one user encoder (:class:`mdrec.models.user_encoder.UserEncoder`) with a
per-weight owner array on every prunable kernel (see :mod:`mdrec.lifelong.masks`) and one small
head per task. The same class, without isolation, is every baseline's model.

Heads (on the user vector [B, dim], or per position for task 1's training):
  next_item   the encoder's own next-item scores (:meth:`UserEncoder.item_scores`: the state . the
              item embeddings (tied) + the encoder's item bias): [B, V] over task 1's item
              vocabulary. The last state is therefore exactly what the head scores, and what the
              later tasks read (with ``pooling: last``).
  line_items  Dense(dim, relu) -> Dense(items of the target line)
  profile     Dense(dim, relu) -> Dense(classes)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.lifelong.masks import masked_kernels, predict_mask, prunable_kernels
from mdrec.models.user_encoder import ITEMS, SPECIAL_ROWS, UserEncoder
from mdrec.pretraining import objectives as obj


class TaskHead(tf_keras.layers.Layer):
    def __init__(self, kind: str, outputs: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.outputs, self.dim = kind, int(outputs), int(dim)
        if kind != "next_item":  # next_item has no weights of its own (see the module doc)
            self.dense = tf_keras.layers.Dense(dim, activation="relu", name="dense")
            self.out = tf_keras.layers.Dense(self.outputs, name="out")

    def build(self, input_shape):
        if self.kind != "next_item":
            self.dense.build([None, self.dim])
            self.out.build([None, self.dim])
        super().build(input_shape)

    def scores(self, vectors: tf.Tensor, encoder: UserEncoder) -> tf.Tensor:
        if self.kind == "next_item":
            return encoder.item_scores(vectors)
        return self.out(self.dense(vectors))


class TaskModel(tf.Module):
    """An encoder and heads for tasks ``slots`` (1-based task indices). ``isolated``: Conure's
    owner arrays (variables, so checkpoints and exports carry them) gate every forward pass."""

    def __init__(self, vocabulary: Sequence[str], encoder_config: dict, heads: dict[int, tuple[str, int]], *,
                 isolated: bool = False, adapter_bottleneck: int = 0, name: str | None = None):
        super().__init__(name=name)
        cfg = dict(encoder_config)
        architecture = cfg.pop("architecture")
        self.pooling = cfg.pop("pooling", "last")  # later tasks' user vector (task 1: always the last state)
        causal = True  # next-item pretraining: causal; the user vector is the last position's state
        self.encoder = UserEncoder(list(vocabulary), architecture=architecture, causal=causal, pooling="last",
                                   adapter_bottleneck=adapter_bottleneck, **cfg)
        self.encoder.build_variables()
        self.heads = {str(t): TaskHead(kind, outputs, self.encoder.dim, name=f"head_{t}")
                      for t, (kind, outputs) in sorted(heads.items())}
        for head in self.heads.values():
            head.build([None, self.encoder.dim])
        self.isolated = bool(isolated)
        self.owners = {}
        if isolated:
            self.owners = {key(name): tf.Variable(tf.zeros(layer.kernel.shape, tf.int32), trainable=False,
                                                  name=f"owner_{key(name)}")
                           for name, layer in prunable_kernels(self.encoder)}

    # ---- weights ------------------------------------------------------------------------------
    def kernels(self) -> list[tuple[str, tf_keras.layers.Layer]]:
        return [(key(name), layer) for name, layer in prunable_kernels(self.encoder)]

    def head(self, task: int) -> TaskHead:
        return self.heads[str(task)]

    def owner_arrays(self) -> dict[str, np.ndarray]:
        return {name: variable.numpy() for name, variable in self.owners.items()}

    def encoder_other_weights(self) -> list[tf.Variable]:
        """Encoder weights that are not prunable kernels (embeddings, biases, norms; adapters excluded)."""
        kernel_ids = {id(layer.kernel) for _, layer in self.kernels()}
        adapter_ids = {id(v) for v in self.encoder.adapter_weights}
        return [v for v in self.encoder.trainable_weights if id(v) not in kernel_ids and id(v) not in adapter_ids]

    def predict_masks(self, task: int) -> dict[str, tf.Tensor] | None:
        if not self.isolated:
            return None
        return {name: predict_mask(variable, task) for name, variable in self.owners.items()}

    # ---- forward ------------------------------------------------------------------------------
    def user_vectors(self, items: tf.Tensor, task: int, training: bool = False) -> tf.Tensor:
        """Task ``task``'s user vector [B, dim] from items [B, L] (call inside ``masked_kernels``):
        the last state for next_item, else as ``pooling`` says."""
        if self.pooling == "last" or self.head(task).kind == "next_item":
            return self.encoder({ITEMS: items}, training=training)
        ids = self.encoder.item_ids(items)
        states, _ = self.encoder.encode_ids(ids, training=training)
        mask = tf.cast(tf.not_equal(ids, 0), states.dtype)[..., None]
        return tf.reduce_sum(states * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)

    def vectors(self, items: tf.Tensor, task: int, masks=None, training: bool = False) -> tf.Tensor:
        with masked_kernels(self.kernels(), masks):
            return self.user_vectors(items, task, training=training)

    def scores(self, items: tf.Tensor, task: int, masks=None, training: bool = False) -> tf.Tensor:
        """Task ``task``'s scores [B, outputs] (next_item: over task 1's vocabulary)."""
        with masked_kernels(self.kernels(), masks):
            vectors = self.user_vectors(items, task, training=training)
            return self.head(task).scores(vectors, self.encoder)

    def loss(self, items: tf.Tensor, labels: tf.Tensor, task: int, kind: str, masks, negatives: int,
             rng: tf.random.Generator) -> tf.Tensor:
        """The batch loss of task ``task`` with the kernels multiplied by ``masks``."""
        head = self.head(task)
        with masked_kernels(self.kernels(), masks):
            if kind == "next_item":
                ids = self.encoder.item_ids(items)
                states, _ = self.encoder.encode_ids(ids, training=True)
                targets = ids[:, 1:]
                select = targets >= SPECIAL_ROWS
                losses = obj.item_softmax_loss(tf.boolean_mask(states[:, :-1], select),
                                               tf.boolean_mask(targets, select) - SPECIAL_ROWS,
                                               self.encoder.item_output_table(), self.encoder.item_bias, negatives, rng)
                return tf.reduce_sum(losses) / tf.maximum(tf.cast(tf.size(losses), tf.float32), 1.0)
            vectors = self.user_vectors(items, task, training=True)
            logits = head.scores(vectors, self.encoder)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.int32), logits=logits))


def key(name: str) -> str:
    return name.replace("/", ".")


def count(variables) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))
