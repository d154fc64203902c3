"""compare-branches' data: the splits, the catalogue with the cold items in it, each test row's
item facts (warm or cold, popularity bucket), and one run's metric tables per item subset.

A subset is "all", "warm", "cold" or "bucket:<name>" (one popularity bucket); each run is scored
on every subset that has rows (CTR) or clicks (retrieval), beside its sanity baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue, item_keys
from mdrec.data.log import LABEL, Log
from mdrec.errors import MdrecError

COLD_BUCKET = "cold (0: not in training)"

Printer = Callable[[str], None]


# ---- data ----------------------------------------------------------------------------------------

def resolve_splits(spec_path, out: Path, *, data=None, train=None, valid=None, test=None,
                   cold_items: float | None = None, split: str = "time", split_seed: int = 0,
                   log: Printer = print) -> tuple[dict[str, str], dict]:
    """The train/valid/test files to compare on (split from ``data`` with cold items when given)."""
    from mdrec.data.splits import split_files

    given = [p for p in (train, valid, test) if p]
    if data and given:
        raise MdrecError("give either --data (split here, with --cold-items) or --train/--valid/--test, not both")
    if data:
        share = 0.1 if cold_items is None else float(cold_items)
        log(f"splitting {data} by {split}, holding {share:.0%} of the items out of training (seed {split_seed})")
        written = split_files(spec_path, data, out / "data", by=split, seed=split_seed, cold_items=share)
        info = {"source": str(data), "split": split, "split_seed": split_seed, "cold_item_share": share,
                "items_held_out": written["cold_items"][0] if "cold_items" in written else 0}
        return {name: str(written[name][1]) for name in ("train", "valid", "test")}, info
    if len(given) != 3:
        raise MdrecError("compare-branches needs --train, --valid and --test (or --data LOG to split here)",
                         hint="e.g. --data log.parquet --cold-items 0.1")
    if cold_items:
        raise MdrecError("--cold-items splits a log given with --data; with --train/--valid/--test the cold "
                         "items are the test items absent from the training file",
                         hint="drop --cold-items, or pass --data instead")
    for name, path in (("train", train), ("valid", valid), ("test", test)):
        if not Path(path).exists():
            raise MdrecError(f"--{name} file not found", path=str(path))
    return {"train": str(train), "valid": str(valid), "test": str(test)}, {"source": "given splits"}


def extend_catalogue(catalogue: Catalogue, logs: Sequence[Log], spec) -> Catalogue:
    """The catalogue plus the items of ``logs`` it lacks (features as last seen there, lines they
    appeared in, no training clicks): cold items become retrievable candidates."""
    new = Catalogue.from_log(Log.concat(list(logs)), spec, catalogue.domains)
    add = np.flatnonzero(catalogue.index_of(new.keys) < 0)
    if len(add) == 0:
        return catalogue
    frame = pd.concat([catalogue.frame, new.frame.iloc[add][catalogue.frame.columns]], ignore_index=True)
    dense = {k: np.concatenate([v, new.dense[k][add]]) for k, v in catalogue.dense.items()}
    membership = np.concatenate([catalogue.membership, new.membership[:, add]], axis=1)
    positives = np.concatenate([catalogue.positives, np.zeros((len(catalogue.domains), len(add)), np.int64)], 1)
    return Catalogue(frame, dense, list(catalogue.domains), membership, positives, catalogue.id_column)


@dataclass
class Items:
    """Per-row item facts of the evaluated log: warm/cold and popularity bucket."""

    keys: np.ndarray          # object [N] table keys
    warm: np.ndarray          # bool [N]
    bucket: np.ndarray        # int [N]; 0 = cold
    bucket_names: list[str]
    train_clicks: dict        # key -> training clicks

    @classmethod
    def of(cls, log: Log, train: Log, spec, buckets: int) -> "Items":
        train_keys = item_keys(train, spec)
        clicks = pd.Series(train.frame[LABEL].to_numpy() > 0).groupby(train_keys).sum().astype(np.int64)
        keys = item_keys(log, spec)
        position = clicks.index.get_indexer(keys)
        warm = position >= 0
        per_item = clicks.to_numpy()
        edges = np.unique(np.quantile(per_item, np.arange(1, buckets) / buckets, method="lower")) \
            if len(per_item) else np.zeros(0)
        names = [COLD_BUCKET]
        low = 0
        for edge in list(edges) + [None]:
            if edge is None:
                names.append(f"{low}+ clicks" if low else "all warm")
            else:
                names.append(f"{low}-{int(edge)} clicks" if int(edge) > low else f"{low} clicks")
                low = int(edge) + 1
        bucket = np.zeros(len(keys), np.int64)
        bucket[warm] = 1 + np.searchsorted(edges, per_item[position[warm]], side="left")
        return cls(keys, warm, bucket, names, clicks.to_dict())


# ---- evaluation of one run -------------------------------------------------------------------------

def subset_masks(items: Items) -> dict[str, np.ndarray]:
    """{subset: bool [N]}: all, warm, cold, then "bucket:<name>" per popularity bucket."""
    masks = {"all": np.ones(len(items.keys), bool), "warm": items.warm, "cold": ~items.warm}
    for b, name in enumerate(items.bucket_names):
        masks[f"bucket:{name}"] = items.bucket == b
    return masks


def ctr_tables(r, items: Items, baseline_scores: np.ndarray | None) -> dict:
    """{subset: {"model": DataFrame, "baseline": DataFrame}} of a CTR run on r.log."""
    from mdrec.training.inference import predict
    from mdrec.workflows.run_tables import ctr_table

    scores = predict(r.model, r.inputs)
    out = {}
    for subset, mask in subset_masks(items).items():
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        part = r.log.take(rows)
        out[subset] = {"model": ctr_table(r.spec, part, scores[rows])}
        if baseline_scores is not None:
            out[subset]["baseline"] = ctr_table(r.spec, part, baseline_scores[rows])
    return out


def retrieval_tables(r, items: Items, catalogue: Catalogue, seen: list[Log]) -> dict:
    """{subset: {"model": DataFrame, "baseline": DataFrame}}: each user's clicks of the subset's
    items ranked against the whole (extended) catalogue of the line."""
    from mdrec.data.pipeline import model_inputs
    from mdrec.evaluation.ranking import (KS, SeenClicks, full_ranking, per_domain_table, popularity_scores,
                                          ranking_queries)
    from mdrec.training.retrieval import candidate_embeddings, query_embeddings

    clicked = r.log.frame[LABEL].to_numpy() > 0
    candidates = candidate_embeddings(r.model, catalogue)
    seen_clicks = SeenClicks.of(seen, r.spec, catalogue)  # once, not once per subset
    query_cache: dict[int, np.ndarray] = {}

    def queries_for(rows: np.ndarray) -> np.ndarray:
        todo = np.array([row for row in rows.tolist() if row not in query_cache], np.int64)
        if len(todo):
            vectors = query_embeddings(r.model, model_inputs(r.log.take(todo), r.spec,
                                                             r.history[todo] if r.history is not None else None))
            query_cache.update(zip(todo.tolist(), vectors))
        return np.stack([query_cache[row] for row in rows.tolist()])

    out = {}
    for subset, mask in subset_masks(items).items():
        rows = np.flatnonzero(mask & clicked)
        if len(rows) == 0:
            continue
        part = r.log.take(rows)
        queries = ranking_queries(part, r.spec, catalogue, seen_clicks)
        if len(queries) == 0:
            continue
        q = queries_for(rows[queries.rows])
        scorers = {"model": lambda positions, q=q: q[positions] @ candidates.T,
                   "baseline": popularity_scores(catalogue, queries)}
        out[subset] = {name: per_domain_table(full_ranking(score, queries, catalogue.membership, KS),
                                              queries.domain, catalogue.domains)
                       for name, score in scorers.items()}
        out[subset]["counts"] = dict(queries.counts, queries=len(queries))
    return out


def data_facts(r, items: Items, train_log: Log, split_info: dict) -> dict:
    """The split's facts for the report: rows per split, warm/cold test items, rows and clicks, and
    each popularity bucket's rows, clicks and items. ``r``: the first run restored on the test split."""
    clicked = r.log.frame[LABEL].to_numpy() > 0
    return {**split_info,
            "rows": {"train": len(train_log), "valid": len(r.context.get("valid", [])), "test": len(r.log)},
            "test_items": {"warm": int(len(set(items.keys[items.warm].tolist()))),
                           "cold": int(len(set(items.keys[~items.warm].tolist())))},
            "test_rows": {"warm": int(items.warm.sum()), "cold": int((~items.warm).sum())},
            "test_clicks": {"warm": int((items.warm & clicked).sum()), "cold": int((~items.warm & clicked).sum())},
            "buckets": {name: {"test_rows": int((items.bucket == b).sum()),
                               "test_clicks": int(((items.bucket == b) & clicked).sum()),
                               "items": int(len(set(items.keys[items.bucket == b].tolist())))}
                        for b, name in enumerate(items.bucket_names)},
            "bucket_names": items.bucket_names}
