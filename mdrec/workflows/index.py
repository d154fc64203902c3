"""``mdrec index``: a retrieval run's candidate embeddings in a per-line ScaNN or brute-force index.

Both kinds are built and measured in one run on held-out queries (the first click of each
(user, line) of the run's validation split, or ``data``): ScaNN's recall@k against exact search,
and the queries per second of each at batch 1 and 256, so the speed-up is a ratio of two numbers
taken side by side. ``recall_target`` tunes ScaNN per line (the cheapest search setting that
reaches the target on the queries). The requested kind is saved as a SavedModel in
``runs/NAME/index/<kind>/`` beside a report (``index/<kind>.json``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypedDict

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.data.pipeline import model_inputs
from mdrec.errors import MdrecError
from mdrec.evaluation.ranking import ranking_queries
from mdrec.fileio import atomic_write_json
from mdrec.records import recorded_path
from mdrec.retrieval.domain_index import KINDS, DomainIndex
from mdrec.retrieval.exact import exact_top_k
from mdrec.retrieval.tuning import measure_qps, recall_against_exact, tune

if TYPE_CHECKING:
    from mdrec.data.catalogue import Catalogue
    from mdrec.training.run import RunDir

Printer = Callable[[str], None]
QPS_BATCHES = (1, 256)  # one request at a time, and a typical batch


# What index_run returns and writes to runs/NAME/index/<kind>.json. Paths are as that file records
# them (mdrec.records.recorded_path): relative to its folder when inside it, else absolute.
class IndexReport(TypedDict):
    run: str                                    # the retrieval run folder
    kind: str                                   # the index saved: "scann" or "brute_force"
    k: int                                      # results per query (at most the smallest line's item count)
    queries: int                                # held-out queries measured
    query_source: str                           # the log the queries were drawn from
    items: int                                  # catalogue items, all lines
    items_per_line: dict[str, int]              # line -> items in its catalogue
    scann_settings: dict[str, dict[str, Any]]   # line -> its ScaNN settings (tuned, else the defaults for its size)
    measured: dict[str, dict[str, Any]]         # "scann", "brute_force" -> recall_at_k, recall_per_line {line:
                                                # recall}, qps_batch_<b> (queries/s); ScaNN also speedup_batch_<b>
    tuning: dict[str, dict[str, Any]]           # with recall_target: line -> reached, recall, message, settings,
                                                # tried (every setting tried); {} untuned
    saved: str                                  # the SavedModel folder index/<kind>/


@dataclass
class HeldOut:
    """A retrieval run's held-out queries and its catalogue, embedded by the trained towers.

    queries: float32 [Q, d]; domain: int32 [Q], each query's line (a row of catalogue.membership);
    candidates: float32 [N, d], one row per catalogue item; data: the log the queries came from.
    """

    run: RunDir
    data: str | Path
    catalogue: Catalogue
    queries: np.ndarray
    domain: np.ndarray
    candidates: np.ndarray


def index_run(run_path: str | Path, *, kind: str = "scann", k: int = 10, recall_target: float | None = None,
              data: str | Path | None = None, max_queries: int = 2000, seed: int = 0,
              qps_seconds: float = 1.0, log: Printer = print) -> IndexReport:
    """Build, measure and save the run's index; returns the report (also written as JSON): k, the
    query and item counts, each line's ScaNN settings, ``measured`` (per kind: recall@k against
    exact search, overall and per line, and queries per second), ``tuning`` and the saved folder."""
    if kind not in KINDS:
        raise MdrecError(f"unknown index kind '{kind}'", hint=f"use one of {', '.join(KINDS)}")
    held = _held_out_queries(run_path, data, max_queries=max_queries, seed=seed)
    catalogue = held.catalogue
    k = min(k, int(catalogue.membership.sum(1).min()))  # no line can return more items than it has
    log(f"{len(held.queries):,} held-out queries from {held.data}; {len(catalogue):,} items in "
        f"{len(catalogue.domains)} line catalogues ({', '.join(f'{d} {n:,}' for d, n in zip(catalogue.domains, catalogue.membership.sum(1)))})")

    _, exact_rows = exact_top_k(held.queries, held.candidates, k, membership=catalogue.membership,
                                query_domain=held.domain)
    settings, tuning = None, {}  # untuned: ScaNN's default settings for each line's size
    if recall_target is not None:
        settings, tuning = _tune_lines(held, exact_rows, k=k, recall_target=recall_target, log=log)
    identifiers = catalogue.ids.astype(str)
    indexes = {"scann": DomainIndex("scann", held.candidates, identifiers, catalogue.membership,
                                    catalogue.domains, k=k, settings=settings),
               "brute_force": DomainIndex("brute_force", held.candidates, identifiers, catalogue.membership,
                                          catalogue.domains, k=k)}
    exact_ids = np.where(exact_rows >= 0, identifiers[np.maximum(exact_rows, 0)], "")
    measured = {name: _measure_index(index, held, exact_ids, qps_seconds=qps_seconds)
                for name, index in indexes.items()}
    _add_speedups(measured)
    return _save_report(held, kind, k, indexes, measured, tuning)


def _held_out_queries(run_path: str | Path, data: str | Path | None, *, max_queries: int, seed: int) -> HeldOut:
    """Restore a finished retrieval run and embed up to ``max_queries`` held-out queries (the first
    click of each (user, line) of ``data``, else the run's validation or test split; a seeded
    sample kept in log order) and the whole catalogue. Returns them as a :class:`HeldOut`."""
    from mdrec.models.registry import model_family
    from mdrec.training.retrieval import candidate_embeddings, query_embeddings
    from mdrec.training.run import RunDir
    from mdrec.workflows.restore import evaluation_context, load_trained, restore_trained

    # Read the config alone first: a CTR run fails here before its model is rebuilt.
    model_name = RunDir(run_path).read_config()[0].model
    if model_family(model_name) != "retrieval":
        raise MdrecError(f"an index needs a retrieval run (two_tower); this run is a '{model_name}' model",
                         path=str(run_path))
    run, config, spec, transform, model = load_trained(run_path)
    data = data or config.valid or config.test
    if not data:
        raise MdrecError("the run has no validation or test file to draw held-out queries from",
                         path=str(run.path), hint="pass --data LOG")
    log_, history, _, _ = evaluation_context(config, spec, transform, data, need_context=False)
    inputs = model_inputs(log_, spec, history)
    restore_trained(model, run, inputs)
    catalogue = model.catalogue
    queries = ranking_queries(log_, spec, catalogue)
    if len(queries) == 0:
        raise MdrecError("no clicks to draw held-out queries from", path=str(data))
    chosen = np.sort(np.random.default_rng(seed).permutation(len(queries))[:max_queries])
    rows, domain = queries.rows[chosen], queries.domain[chosen].astype(np.int32)
    q = query_embeddings(model, {name: values[rows] for name, values in inputs.items()})
    return HeldOut(run=run, data=data, catalogue=catalogue, queries=q, domain=domain,
                   candidates=candidate_embeddings(model, catalogue))


def _tune_lines(held: HeldOut, exact_rows: np.ndarray, *, k: int, recall_target: float,
               log: Printer) -> tuple[dict, dict]:
    """Tune ScaNN on each line's own catalogue and queries (a line without queries keeps the
    defaults). ``exact_rows``: int64 [Q, k] exact top-k catalogue rows of each query (-1 pads).

    Returns (line -> ScannSettings, line -> tuning record for the report).
    """
    catalogue, settings, tuning = held.catalogue, {}, {}
    for d, line in enumerate(catalogue.domains):
        members, mine = np.flatnonzero(catalogue.membership[d]), held.domain == d
        if not mine.any():
            continue
        # The line's index numbers its items 0..n-1 in catalogue order: exact rows to those numbers.
        local = np.searchsorted(members, exact_rows[mine])
        result = tune(held.candidates[members], held.queries[mine], k=k, recall_target=recall_target,
                      exact_ids=local, qps_seconds=0)
        settings[line] = result.settings
        tuning[line] = {"reached": result.reached, "recall": result.recall, "message": result.message,
                        "settings": vars(result.settings), "tried": result.table}
        log(f"tuned {line}: {result.message}")
    return settings, tuning


def _measure_index(index: DomainIndex, held: HeldOut, exact_ids: np.ndarray, *, qps_seconds: float) -> dict:
    """One index on the held-out queries. ``exact_ids``: str [Q, k] exact search's item ids ("" pads).

    Returns {"recall_at_k", "recall_per_line": {line: recall}, "qps_batch_<b>" for each batch size
    b in QPS_BATCHES that the queries fill}.
    """
    q_t, d_t = tf.constant(held.queries), tf.constant(held.domain)
    domain, lines = held.domain, held.catalogue.domains
    _, ids = index.search(q_t, d_t)
    found = ids.numpy().astype(str)
    entry = {"recall_at_k": recall_against_exact(found, exact_ids),
             "recall_per_line": {line: recall_against_exact(found[domain == d], exact_ids[domain == d])
                                 for d, line in enumerate(lines) if (domain == d).any()}}

    def search(positions):
        return index.search(tf.gather(q_t, positions), tf.gather(d_t, positions))

    for batch in QPS_BATCHES:
        if len(domain) >= batch:
            entry[f"qps_batch_{batch}"] = measure_qps(search, np.arange(len(domain)), batch,
                                                      min_seconds=qps_seconds)
    return entry


def _add_speedups(measured: dict) -> None:
    """Add ScaNN's "speedup_batch_<b>" (its queries per second over brute force's) to ``measured``."""
    for batch in QPS_BATCHES:
        key = f"qps_batch_{batch}"
        if key in measured["scann"]:
            measured["scann"][f"speedup_batch_{batch}"] = measured["scann"][key] / measured["brute_force"][key]


def _save_report(held: HeldOut, kind: str, k: int, indexes: dict[str, DomainIndex], measured: dict,
                tuning: dict) -> IndexReport:
    """Save the ``kind`` index as a SavedModel in runs/NAME/index/<kind>/ and write its report
    beside it (index/<kind>.json); returns the report."""
    run, catalogue = held.run, held.catalogue
    folder = run.path / "index" / kind
    indexes[kind].save(folder)
    record = run.path / "index" / f"{kind}.json"  # its paths: absolute or relative to it (mdrec.records)
    report: IndexReport = {
        "run": recorded_path(run.path, record), "kind": kind, "k": k, "queries": len(held.queries),
        "query_source": recorded_path(held.data, record),
        "items": len(catalogue), "items_per_line": dict(zip(catalogue.domains, catalogue.membership.sum(1).tolist())),
        "scann_settings": {line: vars(layer.settings) for line, layer in
                           zip(catalogue.domains, indexes["scann"].indexes)},
        "measured": measured, "tuning": tuning, "saved": recorded_path(folder, record)}
    atomic_write_json(record, report)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The index table: recall@k against exact search and queries per second of both kinds."""
    from mdrec.evaluation.metrics import format_table
    import pandas as pd

    k = report["k"]
    rows = {}
    for name, entry in report["measured"].items():
        row = {f"recall@{k} vs exact": entry["recall_at_k"]}
        row.update({f"recall[{line}]": value for line, value in entry["recall_per_line"].items()})
        for batch in QPS_BATCHES:
            if f"qps_batch_{batch}" in entry:
                row[f"qps@{batch}"] = round(entry[f"qps_batch_{batch}"])
                row[f"speed-up@{batch}"] = entry.get(f"speedup_batch_{batch}", 1.0)
        rows[name] = row
    table = pd.DataFrame(rows).T
    for column in [c for c in table.columns if c.startswith("qps@")]:
        table[column] = table[column].astype(int)
    table.index.name = "index"
    return format_table(table)
