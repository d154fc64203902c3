"""Pretraining objectives: masking, next-item targets, augmentations and their losses.

Every function works on item rows int32 [B, L] (0 = padding, right-padded; 1 = OOV; 2.. the
vocabulary; ``mask_id`` = the [MASK] row) and draws randomness from a ``tf.random.Generator``
(saved in checkpoints, so a resumed run continues the same random stream).

- mlm (ShopperBERT / BERT4Rec): round(rate x n) of a row's n items (at least one) are replaced by
  [MASK] (always: unlike BERT's 10% kept / 10% random, a masked position's input never holds its
  target); the loss is computed at the masked positions only. A fixed number of picks per row
  (``mask_slots``) keeps every shape static, so the step compiles with XLA.
- autoregressive (SASRec / NextItNet / PeterRec): the state at t predicts the item at t + 1, at
  every position that has a next item (a loss at every position).
- contrastive (CLUE / CL4SRec augmentations): each sequence gets two views, each made by one of
  crop (a random contiguous part), mask (random items -> [MASK]) or reorder (a random contiguous
  part shuffled), chosen uniformly per view; InfoNCE with in-batch negatives and a temperature.
Item prediction is a softmax over the whole vocabulary (``negatives`` 0, or at least the
vocabulary), or a sampled softmax: ``negatives`` items drawn log-uniformly by popularity rank (the
vocabulary is most-frequent first) and shared by the batch, each logit corrected by log(expected
count) (logQ), accidental hits removed.
"""
from __future__ import annotations

import math

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.models.user_encoder import SPECIAL_ROWS

AUGMENTATIONS = ("crop", "mask", "reorder")


def mask_slots(length: int, rate: float) -> int:
    """Masked positions picked per row of width ``length``: ceil(rate x length), at least 1."""
    return max(1, min(int(length), int(math.ceil(float(rate) * int(length)))))


def mlm_mask(ids: tf.Tensor, rate: float, rng: tf.random.Generator, mask_id: int, last: float = 0.0
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(inputs [B, L], positions [B, K], targets [B, K], weights [B, K]) with K = mask_slots(L, rate).

    Each row with n items masks round(rate x n) of them (at least 1), chosen uniformly; with
    probability ``last`` a row's newest item is one of them (the case the next-item query is: the
    history with a [MASK] after it). inputs has ``mask_id`` there; positions are the chosen
    indices; targets the original items; weights 1.0 for real picks (a row with fewer picks than
    slots fills the rest with weight 0, target 0).
    """
    ids = tf.cast(ids, tf.int32)
    length = ids.shape[1] if ids.shape[1] is not None else None
    slots = mask_slots(length, rate) if length is not None else None
    valid = tf.not_equal(ids, 0)
    n = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    if slots is None:  # unknown width at trace time (not the compiled path)
        slots = tf.maximum(1, tf.cast(tf.math.ceil(rate * tf.cast(tf.shape(ids)[1], tf.float32)), tf.int32))
    keys = tf.where(valid, rng.uniform(tf.shape(ids)), -1.0)
    if last > 0:  # the newest item's key beats every uniform draw: it is picked first
        newest = tf.equal(tf.range(tf.shape(ids)[1])[None, :], tf.maximum(n - 1, 0)[:, None])
        forced = tf.logical_and(newest, (rng.uniform(tf.shape(n)) < last)[:, None])
        keys = tf.where(tf.logical_and(forced, valid), 2.0, keys)
    positions = tf.math.top_k(keys, k=slots, sorted=True).indices
    picks = tf.minimum(tf.maximum(tf.cast(tf.round(rate * tf.cast(n, tf.float32)), tf.int32), 1), n)
    used = tf.range(tf.shape(positions)[1])[None, :] < picks[:, None]
    weights = tf.cast(used, tf.float32)
    chosen = tf.reduce_max(tf.one_hot(positions, tf.shape(ids)[1], dtype=tf.float32) * weights[..., None], axis=1) > 0
    inputs = tf.where(chosen, tf.cast(mask_id, tf.int32), ids)
    targets = tf.where(used, tf.gather(ids, positions, batch_dims=1), 0)
    return inputs, positions, targets, weights


def next_item_targets(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(targets, weights): the item at t + 1 for every position t (0 past the end)."""
    ids = tf.cast(ids, tf.int32)
    targets = tf.concat([ids[:, 1:], tf.zeros_like(ids[:, :1])], axis=1)
    weights = tf.cast(tf.logical_and(tf.not_equal(ids, 0), tf.not_equal(targets, 0)), tf.float32)
    return targets, weights


def next_item_pairs(window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A window of L + 1 items [B, L + 1] -> (inputs [B, L], targets [B, L], weights [B, L]):
    position t reads items 0..t and predicts item t + 1 (so no item of the window is wasted)."""
    window = tf.cast(window, tf.int32)
    inputs, targets = window[:, :-1], window[:, 1:]
    weights = tf.cast(tf.logical_and(tf.not_equal(inputs, 0), tf.not_equal(targets, 0)), tf.float32)
    return inputs, targets, weights


def augment(ids: tf.Tensor, rng: tf.random.Generator, mask_id: int, *, crop: float = 0.6, mask: float = 0.3,
            reorder: float = 0.6, times: tf.Tensor | None = None,
            kinds: tuple[str, ...] = AUGMENTATIONS) -> tuple[tf.Tensor, tf.Tensor | None]:
    """One augmented view per sequence (and its times): crop keeps a random ``crop`` share of the
    items (contiguous, moved to the front), mask replaces each item by [MASK] with probability
    ``mask``, reorder shuffles a random contiguous ``reorder`` share. One of ``kinds`` per row."""
    ids = tf.cast(ids, tf.int32)
    shape = tf.shape(ids)
    batch, length = shape[0], shape[1]
    valid = tf.not_equal(ids, 0)
    n = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    position = tf.range(length)[None, :]

    def part(rate):
        size = tf.maximum(tf.cast(tf.floor(rate * tf.cast(n, tf.float32)), tf.int32), 1)
        start = tf.cast(tf.floor(rng.uniform([batch]) * tf.cast(tf.maximum(n - size + 1, 1), tf.float32)), tf.int32)
        return size, tf.minimum(start, tf.maximum(n - size, 0))

    size, start = part(crop)
    crop_index = tf.minimum(start[:, None] + position, length - 1)
    keep = position < tf.minimum(size, n)[:, None]
    cropped = tf.where(keep, tf.gather(ids, crop_index, batch_dims=1), 0)

    masked = tf.where(tf.logical_and(valid, rng.uniform(shape) < mask), tf.cast(mask_id, tf.int32), ids)

    size, start = part(reorder)
    inside = tf.logical_and(position >= start[:, None], position < (start + size)[:, None])
    keys = tf.where(inside, tf.cast(start, tf.float32)[:, None] + rng.uniform(shape) * tf.cast(size, tf.float32)[:, None],
                    tf.cast(position, tf.float32))
    order = tf.argsort(keys, axis=1, stable=True)
    reordered = tf.gather(ids, order, batch_dims=1)

    options = {"crop": cropped, "mask": masked, "reorder": reordered}
    choice = rng.uniform([batch], 0, len(kinds), dtype=tf.int32)
    out = options[kinds[-1]]
    for index in range(len(kinds) - 2, -1, -1):
        out = tf.where(tf.equal(choice, index)[:, None], options[kinds[index]], out)
    if times is None:
        return out, None
    time_options = {"crop": tf.where(keep, tf.gather(times, crop_index, batch_dims=1), tf.zeros_like(times)),
                    "mask": times, "reorder": tf.gather(times, order, batch_dims=1)}
    out_times = time_options[kinds[-1]]
    for index in range(len(kinds) - 2, -1, -1):
        out_times = tf.where(tf.equal(choice, index)[:, None], time_options[kinds[index]], out_times)
    return out, out_times


def log_uniform_probability(index: tf.Tensor, num_items: int) -> tf.Tensor:
    """P(k) = log((k + 2) / (k + 1)) / log(V + 1): Zipf over popularity ranks 0 .. V-1."""
    k = tf.cast(index, tf.float32)
    return (tf.math.log(k + 2.0) - tf.math.log(k + 1.0)) / tf.math.log(float(num_items) + 1.0)


def log_uniform_sample(rng: tf.random.Generator, count: int, num_items: int) -> tf.Tensor:
    """``count`` ranks in [0, V) drawn (with replacement) from :func:`log_uniform_probability`."""
    u = rng.uniform([count])
    k = tf.cast(tf.floor(tf.exp(u * tf.math.log(float(num_items) + 1.0))), tf.int32) - 1
    return tf.clip_by_value(k, 0, num_items - 1)


def item_softmax_loss(hidden: tf.Tensor, targets: tf.Tensor, table: tf.Tensor, bias: tf.Tensor,
                      negatives: int, rng: tf.random.Generator) -> tf.Tensor:
    """Per-row cross-entropy of the target item: hidden [n, d], targets [n] (0-based vocabulary
    index), table [V, d], bias [V] -> [n]. Sampled softmax with ``negatives`` shared negatives, or
    the full softmax when ``negatives`` is 0 or covers the vocabulary."""
    num_items = int(table.shape[0])
    targets = tf.cast(targets, tf.int32)
    if full_softmax(negatives, num_items):
        logits = tf.matmul(hidden, table, transpose_b=True) + bias
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    sampled = log_uniform_sample(rng, negatives, num_items)
    log_q_true = tf.math.log(negatives * log_uniform_probability(targets, num_items))
    log_q_sampled = tf.math.log(negatives * log_uniform_probability(sampled, num_items))
    positive = tf.reduce_sum(hidden * tf.gather(table, targets), axis=-1) + tf.gather(bias, targets) - log_q_true
    negative = (tf.matmul(hidden, tf.gather(table, sampled), transpose_b=True) + tf.gather(bias, sampled)
                - log_q_sampled[None, :])
    negative = tf.where(tf.equal(sampled[None, :], targets[:, None]), -1e9, negative)  # accidental hits
    logits = tf.concat([positive[:, None], negative], axis=1)
    return tf.reduce_logsumexp(logits, axis=1) - positive


def window_items(ids: tf.Tensor, num_items: int) -> tf.Tensor:
    """Which vocabulary items each window holds: item rows [B, W] -> bool [B, V] (padding, OOV and
    [MASK] rows ignored)."""
    ids = tf.cast(ids, tf.int32)
    batch = tf.shape(ids)[0]
    index = ids - SPECIAL_ROWS  # item rows SPECIAL_ROWS .. V + 1 are the vocabulary
    known = tf.logical_and(index >= 0, index < num_items)
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(ids))
    flat = tf.where(known, rows * num_items + index, batch * num_items)  # the rest into one spare bin
    hits = tf.scatter_nd(tf.reshape(flat, [-1, 1]), tf.ones([tf.size(flat)], tf.int32), [batch * num_items + 1])
    return tf.reshape(hits[:-1] > 0, [batch, num_items])


def seen_excluded_loss(states: tf.Tensor, targets: tf.Tensor, table: tf.Tensor, bias: tf.Tensor,
                       seen: tf.Tensor) -> tf.Tensor:
    """Cross-entropy [B, T] of each position's target (vocabulary index [B, T]) against every item
    the window does not hold (``seen`` bool [B, V], from :func:`window_items`): the softmax of
    SASRec+'s negatives, which leave out the user's own items, as the filtered ranking does.
    loss = log(exp(s_target) + sum_{i not seen} exp(s_i)) - s_target, with s = state . table + bias."""
    targets = tf.cast(targets, tf.int32)
    # The seen items' -1e9 rides on the bias, once per window [B, 1, V] rather than a mask per position;
    # a batched matmul, and the max / exp-sum written out, ran the step 1.29x faster than an einsum and
    # reduce_logsumexp under XLA on 2 CPU cores (bench/sequence_step.py, ML-1M, 2026-12-06).
    window_bias = tf.where(seen, tf.constant(-1e9, states.dtype), bias[None, :])
    logits = tf.matmul(states, table, transpose_b=True) + window_bias[:, None, :]
    # The target is a seen item (it is in the window): its score comes from its own row instead.
    target = tf.reduce_sum(states * tf.gather(table, targets), axis=-1) + tf.gather(bias, targets)
    top = tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
    rest = tf.math.log(tf.reduce_sum(tf.exp(logits - top), axis=-1)) + top[..., 0]
    return tf.math.softplus(rest - target)  # log(exp(rest) + exp(target)) - target


def full_softmax(negatives: int, num_items: int) -> bool:
    """Whether ``negatives`` means the softmax over the whole vocabulary."""
    return negatives <= 0 or negatives >= num_items


def info_nce(a: tf.Tensor, b: tf.Tensor, temperature: float) -> tf.Tensor:
    """Symmetric InfoNCE of two views [B, d] -> [B]: row i of ``a`` must pick row i of ``b`` among
    the batch (cosine similarity / temperature), and the other way round."""
    a = tf.math.l2_normalize(a, axis=-1)
    b = tf.math.l2_normalize(b, axis=-1)
    logits = tf.matmul(a, b, transpose_b=True) / temperature
    labels = tf.range(tf.shape(a)[0])
    forward = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    backward = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.transpose(logits))
    return 0.5 * (forward + backward)


def weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    weights = tf.cast(weights, values.dtype)
    return tf.reduce_sum(values * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
