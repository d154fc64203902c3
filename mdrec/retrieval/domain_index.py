"""Indexes over catalogues: one tfrs top-k layer per catalogue, and one per business line routed in-graph.

:func:`build_index` makes a tensorflow-recommenders ``ScaNN`` or ``BruteForce`` layer over one
catalogue. :class:`DomainIndex` holds one such index per line's catalogue (an item may be in
several), sends each query to its own line's index and saves as a SavedModel that
:func:`load_domain_index` reads back. Missing results (a line with fewer reachable items than k)
are padded with score -inf and row -1 (id ""), never with another item.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
from tensorflow_recommenders.layers import factorized_top_k

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory
from mdrec.progress import progress
from mdrec.retrieval.checks import check_k, float_matrix, id_strings
from mdrec.retrieval.scann import ScaNN, ScannSettings, quiet_native_logs

KINDS = ("scann", "brute_force")


def build_index(kind: str, candidates: Any, identifiers: Any, *, k: int = 10,
                settings: ScannSettings | None = None, name: str | None = None) -> factorized_top_k.TopK:
    """A tfrs top-k layer over candidates [N, d] with ``identifiers`` [N] (str or int), query_model
    None: call(query embeddings [Q, d], k) -> (scores [Q, k], identifiers [Q, k]).
    ``kind`` "scann" (settings default to ScannSettings.default_for(N, k)) or "brute_force"."""
    if kind not in KINDS:
        raise MdrecError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    cand = float_matrix(candidates, "candidates")
    check_k(k, len(cand), "the catalogue")
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


def save_options(kind: str) -> tf.saved_model.SaveOptions:
    """SaveOptions for a SavedModel holding an index of ``kind``: ScaNN's searcher lives in custom
    ops of the "Scann" namespace, which tf.saved_model.save refuses unless allow-listed."""
    if kind not in KINDS:
        raise MdrecError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if kind == "scann" else None)


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
        cand = float_matrix(candidates, "candidates")
        n, dim = cand.shape
        ids = id_strings(identifiers, n)
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
            check_k(k, len(rows), f"line '{line}''s catalogue")
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
