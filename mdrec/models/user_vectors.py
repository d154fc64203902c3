"""User vectors of many item sequences, shortest first: the batched form of
:meth:`mdrec.models.user_encoder.UserEncoder.vectors_of_ids` that evaluation and transfer use."""
from __future__ import annotations

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.models.user_encoder import UserEncoder


def encoder_vectors(encoder: UserEncoder, ids: np.ndarray, times: np.ndarray | None = None,
                    batch_size: int = 512, width_step: int = 32) -> np.ndarray:
    """User vectors float32 [N, dim] of item rows [N, L] (right-padded), as
    ``UserEncoder.vectors_of_ids`` gives them; one trace per encoder.

    Rows are encoded shortest first, each batch cut to its longest row plus one (room for an
    appended [MASK]) rounded up to ``width_step``: the same vectors as at full width (the padding
    is never read), for about half the work on a long-tailed history length.
    """
    key = "_mdrec_vectors_of_ids" + ("_times" if times is not None else "")
    step = getattr(encoder, key, None)
    if step is None:
        rows = tf.TensorSpec([None, None], tf.int32)
        if times is None:
            step = tf.function(lambda i: encoder.vectors_of_ids(i, training=False), input_signature=[rows],
                               autograph=False)
        else:
            step = tf.function(lambda i, t: encoder.vectors_of_ids(i, t, training=False),
                               input_signature=[rows, tf.TensorSpec([None, None], tf.int64)], autograph=False)
        setattr(encoder, key, step)
    out = np.zeros((len(ids), encoder.dim), np.float32)
    lengths = (np.asarray(ids) != 0).sum(1)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = min(ids.shape[1], -(-(int(lengths[rows].max()) + 1) // width_step) * width_step)
        batch = tf.constant(ids[rows, :width].astype(np.int32))
        out[rows] = (step(batch) if times is None else step(batch, tf.constant(times[rows, :width]))).numpy()
    return out
