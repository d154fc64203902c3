"""Exact dot-product top-k over a catalogue: the ground truth approximate search is measured against.

A blocked matmul + top-k keeps the score matrix under a memory budget (safe at N=1e6, Q=1e4).
Queries may be restricted per query (``allowed``), per line (``membership`` with ``query_domain``)
and by (query, item) pairs never to return (``exclude``); a query with fewer than k permitted
items gets score -inf and index -1 in the missing places.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.progress import progress
from mdrec.retrieval.checks import check_dims, check_domains, check_k, float_matrix


@tf.function(reduce_retracing=True)
def _block_top_k(queries: tf.Tensor, candidates: tf.Tensor, mask: tf.Tensor | None,
                 excluded: tf.Tensor | None, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    scores = tf.matmul(queries, candidates, transpose_b=True)  # [B, N]
    if mask is not None:
        scores = tf.where(mask, scores, -np.inf)
    if excluded is not None:
        scores = tf.tensor_scatter_nd_update(
            scores, excluded, tf.fill([tf.shape(excluded)[0]], tf.constant(-np.inf, tf.float32)))
    return tf.math.top_k(scores, k=k)


def exact_top_k(queries: Any, candidates: Any, k: int, *, allowed: np.ndarray | None = None,
                membership: np.ndarray | None = None, query_domain: np.ndarray | None = None,
                exclude: np.ndarray | None = None,
                block_bytes: int = 256 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Exact dot-product top-k: (scores float32 [Q, k], indices int64 [Q, k]) into the candidates.

    queries [Q, d]; candidates [N, d] (numpy or a tf.Tensor, which is not copied: pass one tensor
    when calling repeatedly). Restrictions, all optional and combined with AND:
    ``allowed`` bool [Q, N] per query; ``membership`` bool [D, N] with ``query_domain`` int [Q]
    (per-line catalogues without materialising [Q, N]); ``exclude`` int [P, 2] of
    (query row, item index) pairs never to return (e.g. a user's training items).
    Queries are processed in blocks whose score matrix stays under ``block_bytes``. A query with
    fewer than k permitted items gets score -inf and index -1 in the missing places.
    """
    q = float_matrix(queries, "queries")
    cand = candidates if isinstance(candidates, tf.Tensor) else tf.constant(float_matrix(candidates, "candidates"))
    if cand.dtype != tf.float32 or cand.shape.rank != 2:
        raise MdrecError(f"candidates must be float32 [N, d], got {cand.dtype.name} {cand.shape}")
    n, dim = int(cand.shape[0]), int(cand.shape[1])
    check_dims(q, dim)
    check_k(k, n, "the catalogue")
    num_q = len(q)
    allowed, membership, query_domain = _restrictions(allowed, membership, query_domain, num_q, n)
    pairs = _exclusions(exclude, num_q, n)
    starts = np.searchsorted(pairs[:, 0], np.arange(num_q + 1)) if pairs is not None else None

    block = int(max(1, min(num_q, block_bytes // max(1, 4 * n))))
    scores = np.empty((num_q, k), np.float32)
    indices = np.empty((num_q, k), np.int64)
    for start in progress(range(0, num_q, block), label=f"exact top-{k} of {num_q:,} queries over {n:,} items",
                          unit="block"):
        stop = min(num_q, start + block)
        mask = None if allowed is None else allowed[start:stop]
        if membership is not None:
            lines = membership[query_domain[start:stop]]
            mask = lines if mask is None else mask & lines
        excluded = None
        if pairs is not None and starts[stop] > starts[start]:
            excluded = pairs[starts[start]:starts[stop]] - np.array([start, 0])
        s, i = _block_top_k(tf.constant(q[start:stop]), cand,
                            None if mask is None else tf.constant(mask),
                            None if excluded is None else tf.constant(excluded), k)
        scores[start:stop], indices[start:stop] = s.numpy(), i.numpy()
    indices[~np.isfinite(scores)] = -1
    return scores, indices


def _restrictions(allowed: Any, membership: Any, query_domain: Any, num_q: int,
                  n: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(allowed bool [Q, N], membership bool [D, N], query_domain int64 [Q]), each None when not given."""
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (num_q, n):
            raise MdrecError(f"allowed must be bool [queries, candidates] = [{num_q}, {n}], got {allowed.shape}")
    if (membership is None) != (query_domain is None):
        raise MdrecError("membership and query_domain go together",
                         hint="pass membership [D, N] and one line index per query")
    if membership is not None:
        membership = np.asarray(membership, dtype=bool)
        query_domain = np.asarray(query_domain).astype(np.int64).reshape(-1)
        if membership.ndim != 2 or membership.shape[1] != n:
            raise MdrecError(f"membership must be bool [domains, {n}], got {membership.shape}")
        if len(query_domain) != num_q:
            raise MdrecError(f"got {len(query_domain)} query domains for {num_q} queries")
        check_domains(query_domain, len(membership))
    return allowed, membership, query_domain


def _exclusions(exclude: Any, num_q: int, n: int) -> np.ndarray | None:
    """int64 [P, 2] (query row, item index) pairs sorted by row, or None."""
    if exclude is None:
        return None
    pairs = np.asarray(exclude, dtype=np.int64)
    if pairs.size == 0:
        return None
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise MdrecError(f"exclude must be int [pairs, 2] of (query row, item index), got shape {pairs.shape}")
    bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= num_q) | (pairs[:, 1] < 0) | (pairs[:, 1] >= n)
    if bad.any():
        raise MdrecError(f"exclude pair {pairs[bad][0].tolist()} is outside [{num_q} queries, {n} items]",
                         row=int(np.flatnonzero(bad)[0]))
    return pairs[np.argsort(pairs[:, 0], kind="stable")]
