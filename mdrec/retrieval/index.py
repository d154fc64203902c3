"""Top-K retrieval over a catalogue of candidate embeddings, exact or approximate (ScaNN).

Inputs everywhere: ``candidates`` float32 [N, d] (L2-normalised item embeddings), ``identifiers``
[N] (item ids), ``queries`` float32 [Q, d]; the score is the dot product. Per business line:
``membership`` bool [D, N] (an item may be in several lines' catalogues) and a line index per
query, int [Q]. A query of line d only ever gets items of d's catalogue.

- :func:`exact_top_k`: blocked matmul + top-k (the ground truth; memory-safe at N=1e6, Q=1e4).
- :func:`build_index`: a tensorflow-recommenders ``ScaNN`` or ``BruteForce`` layer over one catalogue.
- :class:`DomainIndex`: one index per line, routing each query in-graph; saves as a SavedModel.
- :func:`tune`: the cheapest ScaNN search setting that reaches a recall target, with the table.
- :func:`write_scann_searcher` / :func:`load_scann_searcher`: a standalone ScaNN folder (no TF
  Serving) that still loads after the folder is moved.

Missing results (a line with fewer reachable items than k) are padded with score -inf and row -1
(id ""), never with another item. ScaNN's k-means training is multi-threaded and not bit-for-bit
reproducible across builds: compare two builds by recall, a build and its reload by ids.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
from scann.scann_ops.py import scann_ops
from tensorflow_recommenders.layers import factorized_top_k

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json
from mdrec.progress import progress

KINDS = ("scann", "brute_force")
# Below this many items ScaNN scores every item with asymmetric hashing (no partitioning tree):
# leaves of a few dozen points partition nothing, and ScaNN's own rule of thumb partitions only
# large catalogues.
TREE_MIN_ITEMS = 1000
SEARCHER_FORMAT = 1
MANIFEST = "mdrec_scann.json"
IDENTIFIERS = "identifiers.json"


# ---- validation ------------------------------------------------------------------------------------
def _matrix(values: Any, name: str) -> np.ndarray:
    """float32 [rows, d] (a C-contiguous copy only when needed)."""
    array = np.asarray(values.numpy() if hasattr(values, "numpy") else values, dtype=np.float32)
    if array.ndim != 2:
        raise MdrecError(f"{name} must be a 2-D float array [rows, dim], got shape {array.shape}",
                         hint="stack the embeddings into one matrix")
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise MdrecError(f"{name} contain NaN or inf", row=row,
                         hint="check the model that produced the embeddings")
    return np.ascontiguousarray(array)


def _check_dims(queries: np.ndarray, dim: int) -> None:
    if queries.shape[1] != dim:
        raise MdrecError(f"queries have dimension {queries.shape[1]} but the candidates have {dim}",
                         hint="embed queries and candidates with the same two-tower model")


def _check_k(k: int, size: int, where: str) -> None:
    if k < 1:
        raise MdrecError(f"k must be at least 1, got {k}")
    if k > size:
        raise MdrecError(f"k={k} is larger than {where} ({size} items)",
                         hint=f"ask for k <= {size}")


def _id_strings(identifiers: Any, n: int) -> np.ndarray:
    """Item ids as str [N] (bytes are decoded as UTF-8)."""
    values = identifiers.numpy() if hasattr(identifiers, "numpy") else identifiers
    values = np.asarray(values, dtype=object).reshape(-1)
    if len(values) != n:
        raise MdrecError(f"got {len(values)} identifiers for {n} candidates",
                         hint="pass one item id per candidate row, in the same order")
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


# ---- exact search ------------------------------------------------------------------------------------
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
    q = _matrix(queries, "queries")
    cand = candidates if isinstance(candidates, tf.Tensor) else tf.constant(_matrix(candidates, "candidates"))
    if cand.dtype != tf.float32 or cand.shape.rank != 2:
        raise MdrecError(f"candidates must be float32 [N, d], got {cand.dtype.name} {cand.shape}")
    n, dim = int(cand.shape[0]), int(cand.shape[1])
    _check_dims(q, dim)
    _check_k(k, n, "the catalogue")
    num_q = len(q)
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
        _check_domains(query_domain, len(membership))
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


def _check_domains(query_domain: np.ndarray, num_domains: int) -> None:
    bad = (query_domain < 0) | (query_domain >= num_domains)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MdrecError(f"query line index {int(query_domain[row])} is outside 0..{num_domains - 1}", row=row,
                         hint="map line names to indices in the order of `domains`")


# ---- ScaNN settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScannSettings:
    """One ScaNN configuration: a k-means tree (``num_leaves`` partitions, of which
    ``num_leaves_to_search`` nearest are scanned per query; 0 leaves = no tree), asymmetric-hashing
    scores (``dimensions_per_block`` dims per 4-bit code) and exact re-scoring of the
    ``num_reordering_candidates`` best (None = none). The AVQ threshold 0.2 is ScaNN's
    recommendation for dot-product search."""

    num_leaves: int
    num_leaves_to_search: int
    num_reordering_candidates: int | None = 100
    dimensions_per_block: int = 2
    training_iterations: int = 12
    training_sample_size: int = 100_000
    anisotropic_quantization_threshold: float = 0.2

    @classmethod
    def default_for(cls, n: int, k: int = 10) -> "ScannSettings":
        """ScaNN's rules of thumb for N items: sqrt(N) leaves, ~10% of them searched (at least 20:
        a small catalogue's few leaves each hold a large share of the neighbours; searching 10% of
        a 3,000-item tree gave recall@10 of 0.78-0.95 from build to build), re-score max(100, 10k)
        candidates; no tree under TREE_MIN_ITEMS items."""
        if n < 1:
            raise MdrecError("cannot index an empty catalogue", hint="give the catalogue at least one item")
        leaves = int(round(math.sqrt(n))) if n >= TREE_MIN_ITEMS else 0
        searched = min(leaves, max(20, math.ceil(0.1 * leaves)))
        return cls(num_leaves=leaves, num_leaves_to_search=searched if leaves else 0,
                   num_reordering_candidates=min(n, max(100, 10 * k)),
                   training_sample_size=min(n, 100_000))

    def check(self, n: int, k: int, where: str = "the catalogue") -> None:
        """MdrecError when these settings cannot index ``n`` items for top-``k``."""
        if self.num_leaves < 0 or self.num_leaves > n:
            raise MdrecError(f"num_leaves={self.num_leaves} does not fit {where} ({n} items)",
                             hint=f"use 0 (no tree) or at most {n}; ScannSettings.default_for(n) picks one")
        if self.num_leaves and not 1 <= self.num_leaves_to_search <= self.num_leaves:
            raise MdrecError(f"num_leaves_to_search={self.num_leaves_to_search} must be in 1..{self.num_leaves}")
        if self.num_reordering_candidates is not None and self.num_reordering_candidates < min(k, n):
            raise MdrecError(f"num_reordering_candidates={self.num_reordering_candidates} is below k={k}",
                             hint="re-score at least k candidates, or None to switch re-scoring off")
        if self.dimensions_per_block < 1:
            raise MdrecError(f"dimensions_per_block must be >= 1, got {self.dimensions_per_block}")

    def cost(self, n: int, dim: int) -> float:
        """A rough per-query cost in multiply-add equivalents, to order a search grid (not a
        prediction of speed): centroid scores + 4-bit hashed scores of the searched share
        (SIMD table lookups, ~4 per multiply-add) + float re-scoring."""
        share = self.num_leaves_to_search / self.num_leaves if self.num_leaves else 1.0
        hashed = share * n * (dim / self.dimensions_per_block) / 4
        return float(self.num_leaves * dim + hashed + (self.num_reordering_candidates or 0) * dim)


def scann_config(settings: ScannSettings, candidates: np.ndarray | tf.Tensor, k: int) -> str:
    """ScaNN's text config for ``settings`` over candidates [N, d] — the same text for the TF op
    searcher (in SavedModels) and the pybind searcher (tuning, standalone service)."""
    from scann.scann_ops.py import scann_builder

    n = int(candidates.shape[0])
    builder = scann_builder.ScannBuilder(candidates, k, "dot_product")
    if settings.num_leaves:
        builder = builder.tree(num_leaves=settings.num_leaves, num_leaves_to_search=settings.num_leaves_to_search,
                               training_sample_size=settings.training_sample_size,
                               training_iterations=settings.training_iterations)
    builder = builder.score_ah(settings.dimensions_per_block,
                               anisotropic_quantization_threshold=settings.anisotropic_quantization_threshold,
                               training_sample_size=settings.training_sample_size)
    if settings.num_reordering_candidates is not None:
        builder = builder.reorder(min(n, settings.num_reordering_candidates))
    return builder.create_config()


# ---- single-catalogue index layers ---------------------------------------------------------------------
class _NamedScannState(scann_ops.ScannState):
    """ScaNN's searcher tensors with a unique resource name baked into recreate_handle.

    ScaNN's own ScannState recreates its searcher without a shared_name; once reloaded from a
    SavedModel, every index then resolves to the same resource and a query of one line gets
    another line's items. A unique name keeps the searchers apart (and cached between calls)."""

    def __init__(self, tensors, shared_name: str):
        super().__init__(tensors)
        self._shared_name = shared_name

    @tf.function(input_signature=[])
    def recreate_handle(self):
        return scann_ops.tensors_to_scann(
            self.dataset, self.scann_config, self.serialized_partitioner, self.datapoint_to_token,
            self.ah_codebook, self.hashed_dataset, self.int8_dataset, self.int8_multipliers, self.dp_norms,
            shared_name=self._shared_name)


class _NamedSearcher(scann_ops.ScannSearcher):
    def __init__(self, handle, shared_name: str):
        super().__init__(handle)
        self.shared_name = shared_name

    def serialize_to_module(self) -> _NamedScannState:
        # The same name: in this process recreate_handle finds the searcher just built instead of
        # rebuilding a second copy; in a process that loads the SavedModel it builds it once.
        return _NamedScannState(scann_ops.scann_to_tensors(self.searcher_handle), self.shared_name)


class ScaNN(factorized_top_k.ScaNN):
    """tensorflow-recommenders' ScaNN layer configured by :class:`ScannSettings` (the tfrs layer
    has no knob for the sample size, AVQ or a tree-less index). call(queries [Q, d], k) ->
    (scores [Q, k], identifiers [Q, k]); places ScaNN could not fill (it returns NaN there)
    get score -inf and identifier "" (strings) or -1 (integers)."""

    def __init__(self, settings: ScannSettings, k: int = 10, name: str | None = None):
        super().__init__(query_model=None, k=k, distance_measure="dot_product",
                         num_leaves=max(1, settings.num_leaves),
                         num_leaves_to_search=max(1, settings.num_leaves_to_search),
                         training_iterations=settings.training_iterations,
                         dimensions_per_block=settings.dimensions_per_block,
                         num_reordering_candidates=settings.num_reordering_candidates, name=name)
        self.settings = settings
        # tfrs builds its searcher in this closure; ours uses the shared text config and names
        # the searcher's resource uniquely (see _NamedScannState).
        self._build_searcher = self._make_searcher

    def _make_searcher(self, candidates: tf.Tensor) -> _NamedSearcher:
        shared_name = f"mdrec/{self.name}/{uuid.uuid4()}"
        handle = scann_ops.scann_create_searcher(
            x=candidates, scann_config=scann_config(self.settings, candidates, self._k), training_threads=0,
            container="", shared_name=shared_name)
        return _NamedSearcher(handle, shared_name)

    def call(self, queries: tf.Tensor, k: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        k = k if k is not None else self._k
        scores, ids = super().call(queries, k=k)
        return _fill_missing(scores, ids, k)


def _fill_missing(scores: tf.Tensor, ids: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Pad ScaNN's output to [Q, k] and blank its NaN-scored filler (which points at row 0)."""
    blank = tf.constant("", tf.string) if ids.dtype == tf.string else tf.constant(-1, ids.dtype)
    missing = tf.maximum(0, k - tf.shape(scores)[1])
    scores = tf.pad(scores, [[0, 0], [0, missing]], constant_values=-np.inf)
    ids = tf.pad(ids, [[0, 0], [0, missing]], constant_values=blank)
    found = ~tf.math.is_nan(scores)
    return (tf.reshape(tf.where(found, scores, -np.inf), [-1, k]),
            tf.reshape(tf.where(found, ids, blank), [-1, k]))


def build_index(kind: str, candidates: Any, identifiers: Any, *, k: int = 10,
                settings: ScannSettings | None = None, name: str | None = None) -> factorized_top_k.TopK:
    """A tfrs top-k layer over candidates [N, d] with ``identifiers`` [N] (str or int), query_model
    None: call(query embeddings [Q, d], k) -> (scores [Q, k], identifiers [Q, k]).
    ``kind`` "scann" (settings default to ScannSettings.default_for(N, k)) or "brute_force"."""
    if kind not in KINDS:
        raise MdrecError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    cand = _matrix(candidates, "candidates")
    _check_k(k, len(cand), "the catalogue")
    ids = identifiers.numpy() if hasattr(identifiers, "numpy") else np.asarray(identifiers)
    if len(ids) != len(cand):
        raise MdrecError(f"got {len(ids)} identifiers for {len(cand)} candidates",
                         hint="pass one item id per candidate row, in the same order")
    if kind == "brute_force":
        layer = factorized_top_k.BruteForce(k=k, name=name)
    else:
        settings = settings or ScannSettings.default_for(len(cand), k)
        settings.check(len(cand), k)
        layer = ScaNN(settings, k=k, name=name)
    with quiet_native_logs():
        return layer.index(tf.constant(cand), tf.constant(ids))


@contextlib.contextmanager
def quiet_native_logs():
    """Silence ScaNN's C++ (absl) progress lines on stderr while a searcher is built: absl logging
    ignores TF_CPP_MIN_LOG_LEVEL. MDREC_TF_LOG_LEVEL=0 keeps them. Python errors still propagate."""
    if os.environ.get("MDREC_TF_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def save_options(kind: str) -> tf.saved_model.SaveOptions:
    """SaveOptions for a SavedModel holding an index of ``kind``: ScaNN's searcher lives in custom
    ops of the "Scann" namespace, which tf.saved_model.save refuses unless allow-listed."""
    if kind not in KINDS:
        raise MdrecError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if kind == "scann" else None)


# ---- per-domain index -------------------------------------------------------------------------------------
class DomainIndex(tf.Module):
    """One index per line's catalogue; each query searches only its own line's items.

    Build from candidates [N, d], identifiers [N], membership bool [D, N], domains [D].
    ``settings``: None (default_for each catalogue's size), one ScannSettings for every line, or
    {line: ScannSettings}. In a graph: ``index(queries [Q, d], domain [Q] int)`` ->
    (scores float32 [Q, k], ids string [Q, k]); ``index.search`` is the same as a tf.function
    with a fixed signature, ``index.search_rows`` returns catalogue rows int64 [Q, k] instead of
    ids. ``index.save(path)`` writes a SavedModel (signature "serving_default": inputs
    queries, domain; outputs scores, ids) and :func:`load_domain_index` reads it back.
    """

    def __init__(self, kind: str, candidates: Any, identifiers: Any, membership: Any, domains: Sequence[str], *,
                 k: int = 10, settings: ScannSettings | dict[str, ScannSettings] | None = None,
                 name: str = "domain_index"):
        super().__init__(name=name)
        if kind not in KINDS:
            raise MdrecError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        cand = _matrix(candidates, "candidates")
        n, dim = cand.shape
        ids = _id_strings(identifiers, n)
        domains = [str(d) for d in domains]
        member = np.asarray(membership, dtype=bool)
        if member.shape != (len(domains), n):
            raise MdrecError(f"membership must be bool [domains, candidates] = [{len(domains)}, {n}], "
                             f"got {member.shape}")
        if len(set(domains)) != len(domains):
            raise MdrecError(f"domains are not unique: {domains}")
        if isinstance(settings, dict):
            unknown = sorted(set(settings) - set(domains))
            if unknown:
                raise MdrecError(f"settings name unknown lines {unknown}", hint=f"the lines are {domains}")
        self.kind, self.k, self.dim, self.domains = kind, int(k), int(dim), domains
        self.sizes = [int(row.sum()) for row in member]
        self.identifiers = tf.Variable(ids, trainable=False, name="identifiers")
        self.domain_names = tf.Variable(domains, trainable=False, name="domain_names")
        self.indexes = []
        for line, rows in progress(list(zip(domains, member)), label=f"building a {kind} index per line",
                                   unit="line"):
            rows = np.flatnonzero(rows)
            if len(rows) == 0:
                raise MdrecError(f"line '{line}' has no items in its catalogue",
                                 hint="drop it from domains or mark its items in membership")
            _check_k(k, len(rows), f"line '{line}''s catalogue")
            chosen = settings.get(line) if isinstance(settings, dict) else settings
            if kind == "scann":
                chosen = chosen or ScannSettings.default_for(len(rows), k)
                chosen.check(len(rows), k, f"line '{line}''s catalogue")
            self.indexes.append(build_index(kind, cand[rows], rows.astype(np.int64), k=k, settings=chosen,
                                            name=f"{name}_{len(self.indexes)}"))
        signature = [tf.TensorSpec([None, self.dim], tf.float32, name="queries"),
                     tf.TensorSpec([None], tf.int32, name="domain")]
        self.search = tf.function(self.__call__, input_signature=signature)
        self.search_rows = tf.function(self.rows, input_signature=signature)
        self.serve = tf.function(self._serve, input_signature=signature)

    def rows(self, queries: tf.Tensor, domain: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(scores float32 [Q, k], catalogue rows int64 [Q, k]; -inf / -1 where nothing was found)."""
        queries = tf.convert_to_tensor(queries, tf.float32)
        if queries.shape.rank != 2 or (queries.shape[1] is not None and queries.shape[1] != self.dim):
            raise MdrecError(f"queries must be float32 [Q, {self.dim}], got shape {queries.shape}",
                             hint="embed queries with the model whose candidates built this index")
        domain = tf.cast(tf.reshape(domain, [-1]), tf.int32)
        num = len(self.indexes)
        with tf.control_dependencies([
                tf.debugging.assert_equal(tf.shape(domain)[0], tf.shape(queries)[0],
                                          message="one line index per query"),
                tf.debugging.assert_non_negative(domain, message="line index below 0"),
                tf.debugging.assert_less(domain, num, message=f"line index must be < {num} ({self.domains})")]):
            domain = tf.identity(domain)
        # Split the batch by line, search each line's index on its rows, stitch back in order.
        positions = tf.dynamic_partition(tf.range(tf.shape(queries)[0]), domain, num)
        parts = tf.dynamic_partition(queries, domain, num)
        scores, rows = [], []
        for index, part in zip(self.indexes, parts):
            s, r = index(part, k=self.k)
            scores.append(tf.reshape(s, [-1, self.k]))
            rows.append(tf.reshape(tf.cast(r, tf.int64), [-1, self.k]))
        return tf.dynamic_stitch(positions, scores), tf.dynamic_stitch(positions, rows)

    def __call__(self, queries: tf.Tensor, domain: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(scores float32 [Q, k], ids string [Q, k]; -inf / "" where nothing was found)."""
        scores, rows = self.rows(queries, domain)
        ids = tf.gather(self.identifiers, tf.maximum(rows, 0))
        return scores, tf.where(rows >= 0, ids, "")

    def _serve(self, queries: tf.Tensor, domain: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self(queries, domain)
        return {"scores": scores, "ids": ids}

    def domain_of(self, names: Sequence[str]) -> np.ndarray:
        """Line names -> int32 [Q] indices for search; MdrecError naming an unknown line."""
        lookup = {d: i for i, d in enumerate(self.domains)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise MdrecError(f"unknown line '{unknown[0]}'", hint=f"the index has {self.domains}")
        return np.array([lookup[n] for n in names], np.int32)

    def save(self, path: str | Path) -> Path:
        """Write a SavedModel to ``path`` atomically (ScaNN's namespace allow-listed)."""
        with atomic_directory(path) as tmp:
            tf.saved_model.save(self, str(tmp), signatures={"serving_default": self.serve},
                                options=save_options(self.kind))
        return Path(path)


def load_domain_index(path: str | Path):
    """Load a saved DomainIndex: ``.search(queries, domain)``, ``.search_rows``, ``.identifiers``,
    ``.domain_names`` and the "serving_default" signature. Registers ScaNN's ops first."""
    from scann.scann_ops.py import scann_ops  # noqa: F401  (loads the Scann op library)

    if not (Path(path) / "saved_model.pb").is_file():
        raise MdrecError("not a SavedModel folder (no saved_model.pb)", path=str(path),
                         hint="pass the folder DomainIndex.save wrote")
    return tf.saved_model.load(str(path))


# ---- measurement --------------------------------------------------------------------------------------
def recall_against_exact(approx_ids: Any, exact_ids: Any) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k, for ids [Q, k] (ints, str or bytes).
    Places the exact search left empty (-1, "", b"") are not counted in k."""
    approx = np.asarray(approx_ids.numpy() if hasattr(approx_ids, "numpy") else approx_ids)
    exact = np.asarray(exact_ids.numpy() if hasattr(exact_ids, "numpy") else exact_ids)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise MdrecError(f"ids must be [queries, k] with the same queries, got {approx.shape} and {exact.shape}")
    if exact.dtype.kind in "iu":
        empty = exact < 0
    else:
        empty = np.vectorize(lambda v: len(v) == 0, otypes=[bool])(exact.astype(object))
    hit = (exact[:, :, None] == approx[:, None, :]).any(axis=2) & ~empty
    wanted = np.maximum((~empty).sum(axis=1), 1)
    return float(np.mean(hit.sum(axis=1) / wanted))


def measure_qps(search_fn: Callable[[Any], Any], queries: Any, batch_size: int, *, min_seconds: float = 1.0,
                repeats: int = 3, warmup: int = 2) -> float:
    """Queries per second of ``search_fn(batch)`` on full batches of ``queries`` [Q, d] (pass tensors
    for a compiled TF function so conversion is not timed). Warms up first (tracing, caches), then
    each repeat cycles through the batches for at least ``min_seconds``; returns the median rate."""
    total = int(queries.shape[0])
    if batch_size < 1 or total < batch_size:
        raise MdrecError(f"need at least one full batch of {batch_size} queries, got {total}")
    batches = [queries[i:i + batch_size] for i in range(0, total - batch_size + 1, batch_size)]
    for i in range(max(1, warmup)):
        search_fn(batches[i % len(batches)])
    rates = []
    for _ in range(max(1, repeats)):
        done, start = 0, time.perf_counter()
        while True:
            for batch in batches:
                search_fn(batch)
                done += batch_size
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(done / elapsed)
    return float(statistics.median(rates))


# ---- tuning -------------------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """settings: the cheapest tried setting reaching the target (or the best recall when none
    did, with reached False); table: every tried setting in the order tried (increasing cost)."""

    settings: ScannSettings
    recall: float
    qps: float | None
    reached: bool
    recall_target: float
    table: list[dict] = field(default_factory=list)
    message: str = ""


def search_grid(settings: ScannSettings, n: int, dim: int, k: int,
                leaves_to_search: Sequence[int] | None = None,
                reordering: Sequence[int] | None = None) -> list[ScannSettings]:
    """Search-time variants of ``settings`` in increasing :meth:`ScannSettings.cost`. Defaults:
    1%..100% of the leaves (ScaNN: tune num_leaves_to_search to the recall target) x re-scoring
    5k, 10k, 25k candidates (ScaNN: more than k; more is more accurate and slower)."""
    if leaves_to_search is None:
        fractions = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
        leaves_to_search = [max(1, math.ceil(f * settings.num_leaves)) for f in fractions]
    leaves_to_search = sorted({int(v) for v in leaves_to_search}) if settings.num_leaves else [0]
    if reordering is None:
        reordering = [max(k, f * k) for f in (5, 10, 25)]
    reordering = sorted({min(n, max(k, int(v))) for v in reordering})
    grid = [replace(settings, num_leaves_to_search=lts, num_reordering_candidates=r)
            for lts in leaves_to_search for r in reordering]
    for variant in grid:
        variant.check(n, k)
    return sorted(grid, key=lambda s: (s.cost(n, dim), s.num_leaves_to_search, s.num_reordering_candidates))


def tune(candidates: Any, queries: Any, *, k: int = 10, recall_target: float = 0.95,
         num_leaves: int | None = None, leaves_to_search: Sequence[int] | None = None,
         reordering: Sequence[int] | None = None, exact_ids: np.ndarray | None = None,
         batch_size: int = 256, qps_seconds: float = 0.5, qps_repeats: int = 3) -> TuneResult:
    """The cheapest ScaNN search setting that reaches ``recall_target`` recall@k against exact
    search on ``queries`` [Q, d] (a sample of real queries), over candidates [N, d].

    Trains one searcher (num_leaves default sqrt(N)) and walks :func:`search_grid` in increasing
    cost, overriding leaves searched and re-scored candidates per query, measuring recall and,
    with qps_seconds > 0, QPS at ``batch_size``; stops at the first setting that reaches the
    target. If none does, returns the best recall with ``reached=False`` and says so.
    """
    from scann.scann_ops.py import scann_ops_pybind

    cand, q = _matrix(candidates, "candidates"), _matrix(queries, "queries")
    _check_dims(q, cand.shape[1])
    _check_k(k, len(cand), "the catalogue")
    if not 0 < recall_target <= 1:
        raise MdrecError(f"recall_target must be in (0, 1], got {recall_target}")
    base = ScannSettings.default_for(len(cand), k)
    if num_leaves is not None:
        base = replace(base, num_leaves=int(num_leaves), num_leaves_to_search=1 if num_leaves else 0)
    grid = search_grid(base, len(cand), cand.shape[1], k, leaves_to_search, reordering)
    if exact_ids is None:
        exact_ids = exact_top_k(q, cand, k)[1]
    widest = replace(base, num_leaves_to_search=max(s.num_leaves_to_search for s in grid),
                     num_reordering_candidates=max(s.num_reordering_candidates for s in grid))
    with quiet_native_logs():
        searcher = scann_ops_pybind.create_searcher(cand, scann_config(widest, cand, k))
    batch = min(batch_size, len(q))

    table: list[dict] = []
    # Cheapest first, stopping at the first that reaches the target: the bar rarely reaches its end.
    for variant in progress(grid, label=f"tuning ScaNN: up to {len(grid)} search settings over {len(cand):,} items",
                            unit="setting"):
        def run(x, v=variant):
            return searcher.search_batched_parallel(
                x, final_num_neighbors=k, pre_reorder_num_neighbors=v.num_reordering_candidates,
                leaves_to_search=v.num_leaves_to_search if v.num_leaves else None)
        rows, scores = run(q)
        recall = recall_against_exact(np.where(np.isnan(scores), -1, rows), exact_ids)
        qps = measure_qps(run, q, batch, min_seconds=qps_seconds, repeats=qps_repeats) if qps_seconds > 0 else None
        table.append({"num_leaves": variant.num_leaves, "num_leaves_to_search": variant.num_leaves_to_search,
                      "num_reordering_candidates": variant.num_reordering_candidates,
                      "cost": variant.cost(len(cand), cand.shape[1]), "recall": recall, "qps": qps})
        if recall >= recall_target:
            return TuneResult(variant, recall, qps, True, recall_target, table,
                              f"recall@{k} {recall:.3f} >= {recall_target} searching "
                              f"{variant.num_leaves_to_search}/{variant.num_leaves} leaves, "
                              f"re-scoring {variant.num_reordering_candidates}")
    best = max(range(len(table)), key=lambda i: (table[i]["recall"], -i))
    return TuneResult(grid[best], table[best]["recall"], table[best]["qps"], False, recall_target, table,
                      f"no setting reached recall@{k} {recall_target}; the best was {table[best]['recall']:.3f} "
                      f"(every leaf and {grid[best].num_reordering_candidates} re-scored at most); use more "
                      "leaves (num_leaves), a larger reordering grid, or exact search for this catalogue")


# ---- standalone ScaNN searcher (pybind) ------------------------------------------------------------------
def write_scann_searcher(candidates: Any, identifiers: Any, folder: str | Path,
                         settings: ScannSettings | None = None, *, k: int = 10) -> Path:
    """Build ScaNN's pybind searcher over candidates [N, d] and write it, with the identifiers and a
    manifest, to ``folder`` atomically. Asset paths are relative, so the folder may be moved."""
    from scann.scann_ops.py import scann_ops_pybind

    cand = _matrix(candidates, "candidates")
    _check_k(k, len(cand), "the catalogue")
    ids = _id_strings(identifiers, len(cand))
    settings = settings or ScannSettings.default_for(len(cand), k)
    settings.check(len(cand), k)
    with quiet_native_logs():
        searcher = scann_ops_pybind.create_searcher(cand, scann_config(settings, cand, k))
    with atomic_directory(folder) as tmp:
        searcher.serialize(str(tmp), relative_path=True)
        (tmp / IDENTIFIERS).write_text(json.dumps(ids.tolist()), encoding="utf-8")
        atomic_write_json(tmp / MANIFEST, {"format": SEARCHER_FORMAT, "size": len(cand), "dim": int(cand.shape[1]),
                                           "k": k, "distance": "dot_product", "settings": asdict(settings)})
    return Path(folder)


class ScannService:
    """A loaded standalone searcher: search(query [d] or [B, d], k) -> (ids, scores), each [k] or
    [B, k] (str / float32; "" and -inf where fewer than k were found)."""

    def __init__(self, searcher: Any, identifiers: np.ndarray, manifest: dict):
        self.searcher, self.identifiers, self.manifest = searcher, identifiers, manifest
        self.k, self.dim = int(manifest["k"]), int(manifest["dim"])
        self.settings = ScannSettings(**manifest["settings"])

    def search(self, query: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.k if k is None else int(k)
        _check_k(k, len(self.identifiers), "the catalogue")
        q = np.asarray(query, dtype=np.float32)
        single = q.ndim == 1
        q = _matrix(q[None] if single else q, "queries")
        _check_dims(q, self.dim)
        rows, scores = self.searcher.search_batched_parallel(q, final_num_neighbors=k)
        rows, scores = np.asarray(rows, np.int64), np.asarray(scores, np.float32)
        if rows.shape[1] < k:  # defensive: ScaNN pads batched results to k, but never trust a width
            rows = np.pad(rows, [(0, 0), (0, k - rows.shape[1])])
            scores = np.pad(scores, [(0, 0), (0, k - scores.shape[1])], constant_values=np.nan)
        found = ~np.isnan(scores)
        ids = np.where(found, self.identifiers[rows], "").astype(object)
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        return (ids[0], scores[0]) if single else (ids, scores)


def load_scann_searcher(folder: str | Path) -> ScannService:
    """Load a folder written by :func:`write_scann_searcher`, wherever it now lives."""
    from scann.scann_ops.py import scann_ops_pybind

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise MdrecError(f"not a ScaNN searcher folder (no {MANIFEST})", path=str(folder),
                         hint="pass the folder write_scann_searcher wrote")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != SEARCHER_FORMAT:
        raise MdrecError(f"searcher format {manifest.get('format')} is not {SEARCHER_FORMAT}", path=str(manifest_path),
                         hint="rebuild it with this version of mdrec")
    identifiers = np.array(json.loads((folder / IDENTIFIERS).read_text(encoding="utf-8")), dtype=object)
    searcher = scann_ops_pybind.load_searcher(str(folder), assets_backcompat_shim=False)
    return ScannService(searcher, identifiers, manifest)
