"""The pretrained user vector as one more user feature of the target line's model.

A target model (any CTR model or the two-tower query tower) receives the user id it always
receives; :class:`PretrainedUser` looks up that user's source-line behaviour (the sequences kept in
the pretraining run) inside the graph and runs the pretrained encoder over it. No extra request
input is needed, so evaluation, A/B and export work unchanged, and a served model carries the
source histories it was trained with (a snapshot, like a feature store's). A user the source line
has never seen gets the empty sequence and a ``has_history`` flag of 0: a clean fallback that
evaluation reports as its own slice.

Transfer modes (what trains besides the target model's own layers, the "head"):
  frozen    nothing of the encoder (ShopperBERT's U-MLP: the head reads a fixed vector)
  finetune  every encoder weight
  adapter   PeterRec's model patches only: bottleneck adapters added to every encoder block,
            plus the layer norms; every other encoder weight stays as pretrained
  scratch   the same encoder architecture, randomly initialised and fully trained (the control)
"""
from __future__ import annotations

from typing import Any

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.models.user_encoder import UserEncoder
from mdrec.models.user_vectors import encoder_vectors
from mdrec.transfer.settings import ADAPTER_DIM

MODES = ("frozen", "finetune", "adapter", "scratch")
SHORT_WIDTH = 32  # the width short histories are encoded at (see PretrainedUser._encode)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"transfer_mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def apply_policy(encoder: tf_keras.Model, mode: str, adapter_dim: int) -> None:
    """Set which encoder weights train in ``mode`` (adds the adapters in adapter mode).

    Keras 2 decides trainability per layer, so in adapter mode every leaf layer that holds no
    adapter or norm weight is frozen, and weights a non-leaf layer holds itself (a [CLS] token,
    say) are moved to its non-trainable list.
    """
    check_mode(mode)
    if mode == "frozen":
        encoder.trainable = False
        return
    encoder.trainable = True
    if mode != "adapter":
        return
    if adapter_dim < 1:
        raise ValueError(f"adapter_dim must be >= 1, got {adapter_dim}")
    encoder.add_adapters(int(adapter_dim))
    keep = {id(v) for v in list(encoder.adapter_weights) + list(encoder.norm_weights)}
    for layer in encoder._flatten_layers(include_self=True, recursive=True):
        children = list(layer._flatten_layers(include_self=False, recursive=False))
        own = list(layer._trainable_weights)
        if not children and own and not any(id(v) in keep for v in own):
            layer.trainable = False
        elif children:
            for variable in [v for v in own if id(v) not in keep]:
                layer._trainable_weights.remove(variable)
                layer._non_trainable_weights.append(variable)


def trainable_share(encoder: tf_keras.Model) -> dict:
    """Trainable encoder parameters and their share of all encoder parameters."""
    total = int(sum(np.prod(v.shape) for v in encoder.weights))
    trainable = int(sum(np.prod(v.shape) for v in encoder.trainable_weights))
    return {"encoder_parameters": total, "encoder_trainable": trainable,
            "encoder_trainable_share": trainable / total if total else 0.0}


class PretrainedUser(tf_keras.layers.Layer):
    """user ids tf.string [B] -> [pretrained user vector, has_history] float32 [B, dim + 1].

    ``source``: a loaded pretraining run, anything with ``encoder`` (a UserEncoder) and
    ``sequences`` (user -> source-line items, oldest first), as ``load_pretrained`` returns;
    ``mode``: see the module doc; ``short_width``: histories shorter than it are encoded at that
    width, the rest at the encoder's ``max_length`` (0: every history at full width).
    """

    def __init__(self, source: Any, mode: str = "finetune", adapter_dim: int = ADAPTER_DIM,
                 short_width: int = SHORT_WIDTH, **kwargs):
        super().__init__(**kwargs)
        self.mode = check_mode(mode)
        if source.encoder.time_buckets:
            raise ValueError("transfer looks up source items only, not their times: pretrain without "
                             "--time-buckets to transfer the encoder")
        # scratch: the same architecture, fresh weights (the control for "does pretraining help").
        self.encoder = source.encoder if mode != "scratch" else UserEncoder.from_config(source.encoder.get_config())
        apply_policy(self.encoder, mode, adapter_dim)
        self.max_length = int(source.encoder.max_length)
        users = sorted(u for u, items in source.sequences.items() if items)
        histories = np.full((len(users) + 1, self.max_length), "", dtype=object)  # row 0: unknown user
        for row, user in enumerate(users, start=1):
            items = list(source.sequences[user])[-self.max_length:]
            histories[row, :len(items)] = items
        self.known_users = len(users)
        self.users = frozenset(users)  # for evaluation slices (in the graph: user_lookup)
        self.user_lookup = tf_keras.layers.StringLookup(vocabulary=users or ["\x00<none>"], num_oov_indices=1,
                                                        mask_token=None, name="source_users")
        self.histories = tf.constant(histories.astype(str))
        self.lengths = tf.constant((histories != "").sum(axis=1).astype(np.int32))  # [known users + 1]
        # Histories are long-tailed (most users short, a few at max_length): shorter than
        # ``short_width`` (room left for an appended [MASK]) they are encoded at that width.
        self.short_width = int(short_width) if 0 < short_width < self.max_length else 0
        # A frozen encoder's weights never change, so each user's vector is computed once, here:
        # training then reads a table (about the cost of no transfer) and serves the same numbers.
        self.frozen_vectors = None                                                  # [known users + 1, dim]
        if mode == "frozen":
            self.frozen_vectors = tf.constant(encoder_vectors(self.encoder, self.encoder.item_ids(self.histories).numpy()))

    @property
    def width(self) -> int:
        return int(self.encoder.dim) + 1

    def source_history(self, user_ids: tf.Tensor) -> tf.Tensor:
        """Each user's source-line items, oldest first, "" padding: tf.string [B, max_length]."""
        return tf.gather(self.histories, self.user_lookup(user_ids))

    def call(self, user_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        # A user's rows share one source history: encode each distinct user of the batch once (a
        # target line's batch repeats its users; users unknown to the source share the empty row).
        users, row_user = tf.unique(self.user_lookup(user_ids))
        history = tf.gather(self.histories, users)                                   # [U, max_length]
        if self.frozen_vectors is not None:
            vector = tf.gather(self.frozen_vectors, users)
        else:
            vector = self._encode(history, tf.gather(self.lengths, users), bool(training))
        has_history = tf.cast(tf.reduce_any(tf.not_equal(history, ""), axis=1), vector.dtype)[:, None]
        return tf.gather(tf.concat([vector * has_history, has_history], axis=-1), row_user)   # [B, dim + 1]

    def _encode(self, history: tf.Tensor, lengths: tf.Tensor, training: bool) -> tf.Tensor:
        """history tf.string [U, max_length] -> user vectors [U, dim]: the short histories at
        ``short_width``, the others at full width. The same vectors as one full-width call (the
        padding after a history is never read), for a fraction of the work."""
        if not self.short_width:
            return self.encoder({"items": history}, training=training)
        group = tf.cast(lengths >= self.short_width, tf.int32)                       # 0 short, 1 long
        rows = tf.dynamic_partition(tf.range(tf.shape(history)[0]), group, 2)
        short, long = tf.dynamic_partition(history, group, 2)
        vectors = [self.encoder({"items": short[:, :self.short_width]}, training=training),
                   self.encoder({"items": long}, training=training)]
        return tf.dynamic_stitch(rows, vectors)
