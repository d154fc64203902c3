"""Per-weight task ownership (Conure's parameter isolation) and magnitude pruning.

Prunable weights: the kernels of the encoder blocks' layers (Transformer: the attention's query,
key, value and output projections and the two feed-forward layers; NextItNet: the two dilated
convolutions per block). Each has an integer ``owner`` array of its shape: 0 = free, t >= 1 =
owned (and frozen) by task t. Every other encoder weight (item/attribute/position embeddings,
biases, layer norms) belongs to task 1: it trains in task 1 and is frozen afterwards.

Task t:
  train    forward with W * [owner <= t-1 or owner == 0] (everything not pruned away: the weights
           of tasks < t, frozen, and the free ones); gradients masked to owner == 0.
  prune    in every kernel, among the weights task t trained (owner == 0), keep the largest
           (1 - p_t) by magnitude (owner = t); set the rest to zero (they stay free).
  retrain  forward with W * [1 <= owner <= t]; gradients masked to owner == t.
  predict  W * [1 <= owner <= t]: later tasks only change weights with owner 0 or > t, which this
           mask multiplies by zero, so task t's outputs never change again (bit for bit).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.layers.sequence import Adapter

PRUNABLE_LAYERS = (tf_keras.layers.Dense, tf_keras.layers.EinsumDense, tf_keras.layers.Conv1D)


def prunable_kernels(encoder) -> list[tuple[str, tf_keras.layers.Layer]]:
    """(name, layer) of every prunable kernel of ``encoder``'s blocks, in a fixed order (the
    encoder must be built; adapters are never prunable)."""
    out = []
    for block in encoder.blocks:
        adapter_layers = {id(layer) for adapter in block.adapters
                          for layer in adapter._flatten_layers(include_self=True, recursive=True)}
        for layer in block._flatten_layers(include_self=False, recursive=True):
            if id(layer) in adapter_layers or isinstance(layer, Adapter):
                continue
            if isinstance(layer, PRUNABLE_LAYERS) and getattr(layer, "kernel", None) is not None:
                out.append((f"{block.name}/{layer.name}", layer))
    if not out:
        raise ValueError("the encoder has no built prunable kernels (call build_variables first)")
    return out


@contextlib.contextmanager
def masked_kernels(kernels: list[tuple[str, tf_keras.layers.Layer]], masks: dict[str, tf.Tensor] | None
                   ) -> Iterator[None]:
    """Run the encoder with every prunable kernel replaced by ``kernel * mask`` (None: unmasked).

    The layers read ``self.kernel`` in ``call``; the variable is swapped for the masked tensor
    (bypassing Keras' attribute tracking, so the variable stays the tracked weight) and put back
    afterwards. Gradients reach the variable through the product (masked to zero where mask is 0).
    """
    if masks is None:
        yield
        return
    saved = []
    try:
        for name, layer in kernels:
            variable = layer.kernel
            saved.append((layer, variable))
            object.__setattr__(layer, "kernel", variable * tf.cast(masks[name], variable.dtype))
        yield
    finally:
        for layer, variable in saved:
            object.__setattr__(layer, "kernel", variable)


def predict_mask(owner, task: int):
    """Weights task ``task`` (1-based) reads when predicting: 1 <= owner <= task (float32)."""
    owner = tf.convert_to_tensor(owner)
    return tf.cast(tf.logical_and(owner >= 1, owner <= task), tf.float32)


def train_forward_mask(owner: np.ndarray, task: int) -> np.ndarray:
    """Forward mask while task ``task`` trains: the frozen weights of earlier tasks and the free ones."""
    return ((owner == 0) | ((owner >= 1) & (owner < task))).astype(np.float32)


def prune(values: np.ndarray, owner: np.ndarray, task: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude pruning of one kernel after task ``task`` trained its free weights (owner == 0):
    the largest ``1 - rate`` of them (at least one when any) become ``task``'s, the rest are zeroed
    and stay free. Returns (new values, new owner); weights of other tasks are untouched."""
    values, owner = np.array(values, copy=True), np.array(owner, copy=True)
    free = np.flatnonzero(owner.reshape(-1) == 0)
    if not len(free):
        return values, owner
    keep = len(free) if rate <= 0 else max(1, int(round((1.0 - rate) * len(free))))
    magnitude = np.abs(values.reshape(-1)[free])
    # Largest magnitudes first; ties broken by position, so pruning is deterministic.
    order = np.lexsort((free, -magnitude))
    kept, dropped = free[order[:keep]], free[order[keep:]]
    flat_owner, flat_values = owner.reshape(-1), values.reshape(-1)
    flat_owner[kept] = task
    flat_values[dropped] = 0.0
    return flat_values.reshape(values.shape), flat_owner.reshape(owner.shape)


def ownership_summary(owners: dict[str, np.ndarray], tasks: int) -> dict:
    """Weights per owner (0 = free) over all prunable kernels, and per kernel."""
    total = sum(int(o.size) for o in owners.values())
    per_task = {str(t): int(sum(int((o == t).sum()) for o in owners.values())) for t in range(0, tasks + 1)}
    return {"prunable_weights": total, "per_owner": per_task,
            "share": {t: (n / total if total else 0.0) for t, n in per_task.items()}}
