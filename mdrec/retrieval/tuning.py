"""Recall and speed of a search, and the cheapest ScaNN search setting that reaches a recall target.

:func:`recall_against_exact` compares approximate ids with exact search's, :func:`measure_qps`
times a search function on full batches, and :func:`tune` walks :func:`search_grid` in
increasing cost until a setting reaches the target, returning a :class:`TuneResult` with the
table of every setting tried. Compare two ScaNN builds by recall, never by ids.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from mdrec.errors import MdrecError
from mdrec.progress import progress
from mdrec.retrieval.checks import check_dims, check_k, float_matrix
from mdrec.retrieval.exact import exact_top_k
from mdrec.retrieval.scann import ScannSettings, quiet_native_logs, scann_config


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

    cand, q = float_matrix(candidates, "candidates"), float_matrix(queries, "queries")
    check_dims(q, cand.shape[1])
    check_k(k, len(cand), "the catalogue")
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
