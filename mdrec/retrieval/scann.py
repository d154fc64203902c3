"""ScaNN settings and the tensorflow-recommenders ScaNN layer they configure.

:class:`ScannSettings` holds one configuration (k-means tree, asymmetric hashing, exact
re-scoring) with ScaNN's rules of thumb for a catalogue's size; :func:`scann_config` turns it into
ScaNN's text config, the same for the TF op searcher (in SavedModels) and the pybind searcher
(tuning, standalone service). :class:`ScaNN` is the tfrs layer built from that config with its
searcher resource named uniquely, so several indexes stay apart after a SavedModel reload.
ScaNN's k-means training is multi-threaded and not bit-for-bit reproducible across builds.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import uuid
from dataclasses import dataclass

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
from scann.scann_ops.py import scann_ops
from tensorflow_recommenders.layers import factorized_top_k

from mdrec.errors import MdrecError

# Below this many items ScaNN scores every item with asymmetric hashing (no partitioning tree):
# leaves of a few dozen points partition nothing, and ScaNN's own rule of thumb partitions only
# large catalogues.
TREE_MIN_ITEMS = 1000


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
