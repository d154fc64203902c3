"""``mdrec index``: a retrieval run's candidate embeddings in a per-line ScaNN or brute-force index.

Both kinds are built and measured in one run on held-out queries (the first click of each
(user, line) of the run's validation split, or ``data``): ScaNN's recall@k against exact search,
and the queries per second of each at batch 1 and 256, so the speed-up is a ratio of two numbers
taken side by side. ``recall_target`` tunes ScaNN per line (the cheapest search setting that
reaches the target on the queries). The requested kind is saved as a SavedModel in
``runs/NAME/index/<kind>/`` beside a report (``index/<kind>.json``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

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

Printer = Callable[[str], None]


def index_run(run_path: str | Path, *, kind: str = "scann", k: int = 10, recall_target: float | None = None,
              data: str | Path | None = None, max_queries: int = 2000, seed: int = 0,
              qps_seconds: float = 1.0, log: Printer = print) -> dict:
    """Build, measure and save the run's index; returns the report (also written as JSON)."""
    from mdrec.models.registry import model_family
    from mdrec.training.retrieval import candidate_embeddings, query_embeddings
    from mdrec.training.run import RunDir
    from mdrec.workflows.restore import evaluation_context, load_trained, restore_trained

    if kind not in KINDS:
        raise MdrecError(f"unknown index kind '{kind}'", hint=f"use one of {', '.join(KINDS)}")
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
    c = candidate_embeddings(model, catalogue)
    k = min(k, int(catalogue.membership.sum(1).min()))
    log(f"{len(rows):,} held-out queries from {data}; {len(catalogue):,} items in "
        f"{len(catalogue.domains)} line catalogues ({', '.join(f'{d} {n:,}' for d, n in zip(catalogue.domains, catalogue.membership.sum(1)))})")

    _, exact_rows = exact_top_k(q, c, k, membership=catalogue.membership, query_domain=domain)
    settings, tuning = None, {}
    if recall_target is not None:
        settings = {}
        for d, line in enumerate(catalogue.domains):
            members, mine = np.flatnonzero(catalogue.membership[d]), domain == d
            if not mine.any():
                continue
            local = np.searchsorted(members, exact_rows[mine])
            result = tune(c[members], q[mine], k=k, recall_target=recall_target, exact_ids=local,
                          qps_seconds=0)
            settings[line] = result.settings
            tuning[line] = {"reached": result.reached, "recall": result.recall, "message": result.message,
                            "settings": vars(result.settings), "tried": result.table}
            log(f"tuned {line}: {result.message}")
    identifiers = catalogue.ids.astype(str)
    indexes = {"scann": DomainIndex("scann", c, identifiers, catalogue.membership, catalogue.domains, k=k,
                                    settings=settings),
               "brute_force": DomainIndex("brute_force", c, identifiers, catalogue.membership,
                                          catalogue.domains, k=k)}
    q_t, d_t = tf.constant(q), tf.constant(domain)
    exact_ids = np.where(exact_rows >= 0, identifiers[np.maximum(exact_rows, 0)], "")
    measured = {}
    for name, index in indexes.items():
        _, ids = index.search(q_t, d_t)
        found = ids.numpy().astype(str)
        entry = {"recall_at_k": recall_against_exact(found, exact_ids),
                 "recall_per_line": {line: recall_against_exact(found[domain == d], exact_ids[domain == d])
                                     for d, line in enumerate(catalogue.domains) if (domain == d).any()}}
        for batch in (1, 256):
            if len(rows) >= batch:
                def search(positions, index=index):
                    return index.search(tf.gather(q_t, positions), tf.gather(d_t, positions))
                entry[f"qps_batch_{batch}"] = measure_qps(search, np.arange(len(rows)), batch,
                                                          min_seconds=qps_seconds)
        measured[name] = entry
    for batch in (1, 256):
        key = f"qps_batch_{batch}"
        if key in measured["scann"]:
            measured["scann"][f"speedup_batch_{batch}"] = measured["scann"][key] / measured["brute_force"][key]

    folder = run.path / "index" / kind
    indexes[kind].save(folder)
    record = run.path / "index" / f"{kind}.json"  # its paths: absolute or relative to it (mdrec.records)
    report = {"run": recorded_path(run.path, record), "kind": kind, "k": k, "queries": len(rows),
              "query_source": recorded_path(data, record),
              "items": len(catalogue), "items_per_line": dict(zip(catalogue.domains,
                                                                   catalogue.membership.sum(1).tolist())),
              "scann_settings": {line: vars(layer.settings) for line, layer in
                                 zip(catalogue.domains, indexes["scann"].indexes)},
              "measured": measured, "tuning": tuning, "saved": recorded_path(folder, record)}
    atomic_write_json(record, report)
    return report


def format_report(report: dict) -> str:
    """The index table: recall@k against exact search and queries per second of both kinds."""
    from mdrec.evaluation.metrics import format_table
    import pandas as pd

    k = report["k"]
    rows = {}
    for name, entry in report["measured"].items():
        row = {f"recall@{k} vs exact": entry["recall_at_k"]}
        row.update({f"recall[{line}]": value for line, value in entry["recall_per_line"].items()})
        for batch in (1, 256):
            if f"qps_batch_{batch}" in entry:
                row[f"qps@{batch}"] = round(entry[f"qps_batch_{batch}"])
                row[f"speed-up@{batch}"] = entry.get(f"speedup_batch_{batch}", 1.0)
        rows[name] = row
    table = pd.DataFrame(rows).T
    for column in [c for c in table.columns if c.startswith("qps@")]:
        table[column] = table[column].astype(int)
    table.index.name = "index"
    return format_table(table)
