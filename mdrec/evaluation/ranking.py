"""Top-K retrieval metrics: Recall@K, NDCG@K and HR@K per business line.

Full protocol (the default): one query per (user, line) of the evaluated log's clicks, with the
features of that user's first click there (its history then holds only earlier events). The query
is ranked against the line's whole catalogue by exact search; the user's clicked items of the
context splits (training, and validation when the test split is evaluated) are removed from the
ranking, since recommending them again is not the task. Relevant items: the distinct items the
user clicked in the evaluated log, minus those removed; a relevant item absent from the catalogue
(never seen in training) stays in the denominator, since the full catalogue cannot return it.

Sampled protocol (DisenCDR's, labelled as sampled): each relevant catalogue item is ranked against
``negatives`` items drawn uniformly from the line's catalogue among items the user never clicked
(a line with fewer items draws at most its size less one).
Sampled metrics are much higher than full ones and are comparable only with other sampled numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue, item_keys
from mdrec.data.log import DOMAIN, LABEL, TIME, Log
from mdrec.spec import Spec

KS = (10, 50, 100)
ScoreBlock = Callable[[np.ndarray], np.ndarray]  # query positions [q] -> scores float [q, N]


@dataclass
class RankingQueries:
    """rows: the log row of each query [Q]; domain: its line's index [Q]; relevant / excluded:
    catalogue rows per query (relevant may hold -1 for items outside the catalogue)."""

    rows: np.ndarray
    domain: np.ndarray
    users: np.ndarray
    relevant: list[np.ndarray]
    excluded: list[np.ndarray]
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> "RankingQueries":
        """The queries at ``keep`` (positions, or a boolean mask [Q]), in that order."""
        keep = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)
        return RankingQueries(self.rows[keep], self.domain[keep], self.users[keep],
                              [self.relevant[i] for i in keep], [self.excluded[i] for i in keep])


@dataclass(frozen=True)
class SeenClicks:
    """The distinct (user, catalogue row) pairs clicked in some logs: what a ranking removes. Made
    once, it serves every ranking of one catalogue against the same context logs."""

    pairs: pd.DataFrame  # columns user (object), item (int64 catalogue row, never -1)

    @classmethod
    def of(cls, logs: Sequence[Log], spec: Spec, catalogue: Catalogue) -> "SeenClicks":
        return cls(_clicked_items(logs, spec, catalogue, spec.user_id.name))


def ranking_queries(log: Log, spec: Spec, catalogue: Catalogue,
                    seen: Sequence[Log] | SeenClicks = ()) -> RankingQueries:
    """Queries of ``log``'s clicks; ``seen``: the logs whose clicks are removed from the ranking
    (or their :class:`SeenClicks`, made once for many rankings)."""
    user_col = spec.user_id.name
    clicked = log.frame[LABEL].to_numpy() > 0
    row_items = item_keys(log, spec)
    frame = pd.DataFrame({"user": log.frame[user_col].to_numpy(dtype=object),
                          "domain": log.frame[DOMAIN].to_numpy(dtype=object),
                          "key": row_items, "item": catalogue.index_of(row_items),
                          "time": log.frame[TIME].to_numpy() if TIME in log.frame else np.arange(len(log)),
                          "row": np.arange(len(log))})[clicked]
    counts = {"clicks": int(clicked.sum()), "targets_outside_catalogue": 0, "repeat_targets_removed": 0,
              "queries_without_targets": 0}
    seen_items = seen.pairs if isinstance(seen, SeenClicks) else _clicked_items(seen, spec, catalogue, user_col)
    # One query per (user, line), in key order; its row is the first click there (by time, then row).
    frame = frame.sort_values(["time", "row"], kind="stable")
    first = frame.groupby(["user", "domain"], sort=True)["row"].first()
    # Distinct by the item's key: every item outside the catalogue is row -1, and each is a target.
    pairs = frame.drop_duplicates(["user", "domain", "key"])[["user", "domain", "item"]]
    if len(seen_items):
        repeat = pairs.merge(seen_items.assign(repeat=True), on=["user", "item"], how="left")["repeat"]
        repeat = repeat.notna().to_numpy()  # True where the pair was seen, NaN (no match) elsewhere
        counts["repeat_targets_removed"] = int(repeat.sum())
        pairs = pairs[~repeat]
    grouped = pairs.groupby(["user", "domain"], sort=True)
    group, keys = grouped.ngroup().to_numpy(), grouped.size().index  # keys in ngroup's order
    order = np.lexsort((pairs["item"].to_numpy(), group))
    items, group = pairs["item"].to_numpy(np.int64)[order], group[order]
    relevant = np.split(items, np.flatnonzero(np.diff(group)) + 1) if len(items) else []
    counts["queries_without_targets"] = len(first) - len(keys)
    counts["targets_outside_catalogue"] = int((items < 0).sum())
    users = keys.get_level_values("user").to_numpy(dtype=object)
    by_user = dict(zip(*_grouped(seen_items))) if len(seen_items) else {}
    empty = np.zeros(0, np.int64)
    domain_index = {d: i for i, d in enumerate(catalogue.domains)}
    return RankingQueries(first.loc[keys].to_numpy(np.int64),
                          np.asarray([domain_index[d] for d in keys.get_level_values("domain")], np.int64),
                          users, relevant, [by_user.get(u, empty) for u in users], counts)


def _clicked_items(logs: Sequence[Log], spec: Spec, catalogue: Catalogue, user_col: str) -> pd.DataFrame:
    """The distinct (user, catalogue row) pairs clicked in ``logs``."""
    parts = [pd.DataFrame({"user": s.frame[user_col].to_numpy(dtype=object),
                           "item": catalogue.index_of(item_keys(s, spec))})[s.frame[LABEL].to_numpy() > 0]
             for s in logs]
    if not parts:
        return pd.DataFrame({"user": np.zeros(0, object), "item": np.zeros(0, np.int64)})
    history = pd.concat(parts, ignore_index=True)
    return history[history["item"] >= 0].drop_duplicates()


def _grouped(pairs: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each user of ``pairs`` and their items (in first-seen order), without a Python loop per group."""
    codes, users = pd.factorize(pairs["user"])
    order = np.argsort(codes, kind="stable")
    codes, items = codes[order], pairs["item"].to_numpy(np.int64)[order]
    return np.asarray(users, dtype=object), np.split(items, np.flatnonzero(np.diff(codes)) + 1)


def full_ranking(score_block: ScoreBlock, queries: RankingQueries, membership: np.ndarray,
                 ks: Sequence[int] = KS, block: int = 256) -> dict[str, np.ndarray]:
    """Per-query recall@K, ndcg@K, hr@K (float [Q] each) against each line's whole catalogue."""
    k_max = int(min(max(ks), membership.shape[1]))
    out = {f"{m}@{k}": np.zeros(len(queries)) for k in ks for m in ("recall", "ndcg", "hr")}
    gains = 1.0 / np.log2(np.arange(2, max(ks) + 2))   # discount of rank 1, 2, ...
    ideal = np.cumsum(gains)                            # best DCG with 1, 2, ... relevant items
    for start in range(0, len(queries), block):
        positions = np.arange(start, min(start + block, len(queries)))
        scores = np.array(score_block(positions), dtype=np.float32, copy=True)
        scores[~membership[queries.domain[positions]]] = -np.inf
        scores[_marks(queries.excluded, positions, scores.shape)] = -np.inf
        top = np.argpartition(-scores, k_max - 1, axis=1)[:, :k_max]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        hits = np.take_along_axis(_marks(queries.relevant, positions, scores.shape), top, 1)  # [b, k_max]
        found = np.cumsum(hits, axis=1)
        discounted = np.cumsum(hits * gains[:k_max], axis=1)
        wanted = np.array([len(queries.relevant[q]) for q in positions])  # outside-catalogue items count
        for k in ks:
            at = min(k, k_max) - 1
            out[f"recall@{k}"][positions] = found[:, at] / wanted
            out[f"hr@{k}"][positions] = (found[:, at] > 0).astype(float)
            out[f"ndcg@{k}"][positions] = discounted[:, at] / ideal[np.minimum(wanted, k) - 1]
    return out


def _marks(per_query: list[np.ndarray], positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool [b, N]: True at each of the block's queries' catalogue rows (negative rows skipped)."""
    marks = np.zeros(shape, dtype=bool)
    columns = [per_query[q] for q in positions]
    rows = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
    columns_flat = np.concatenate(columns) if columns else np.zeros(0, np.int64)
    inside = columns_flat >= 0
    marks[rows[inside], columns_flat[inside].astype(np.int64)] = True
    return marks


def sampled_ranking(score_block: ScoreBlock, queries: RankingQueries, membership: np.ndarray,
                    ks: Sequence[int] = KS, negatives: int = 999, seed: int = 0,
                    block: int = 256) -> dict[str, np.ndarray]:
    """Per (query, relevant catalogue item): sampled hr@K, ndcg@K and mrr (1 / rank), float [P]
    each, plus "query" (the query position of each pair). Ties count half, so constant scores rank
    in the middle."""
    from mdrec.data.prepare import sample_negatives

    rng = np.random.default_rng(seed)
    # Known items per query (never negatives): removed items and every relevant item.
    pairs_q, pairs_item, negs = [], [], []
    for d in range(membership.shape[0]):
        members = np.flatnonzero(membership[d])
        in_line = np.flatnonzero(queries.domain == d)
        if len(in_line) == 0 or len(members) == 0:
            continue
        local = {int(item): i for i, item in enumerate(members)}
        known_keys, q_of_pair, item_of_pair = [], [], []
        for code, q in enumerate(in_line):
            mine = [local[int(i)] for i in np.concatenate([queries.excluded[q], queries.relevant[q]])
                    if int(i) in local]
            known_keys.extend(code * len(members) + m for m in mine)
            for item in queries.relevant[q]:
                if int(item) in local:
                    q_of_pair.append(code)
                    item_of_pair.append(int(item))
        if not q_of_pair:
            continue
        # A line with fewer items than negatives + 1 offers each of its other items once (drawing
        # with replacement would count one item many times and sink the positive's rank).
        k = max(min(negatives, len(members) - 1), 1)
        drawn = sample_negatives(np.asarray(q_of_pair), k, len(members),
                                 np.unique(np.asarray(known_keys, np.int64)), rng)
        drawn = np.pad(drawn, ((0, 0), (0, negatives - k)), constant_values=-1)
        pairs_q.append(in_line[q_of_pair])
        pairs_item.append(np.asarray(item_of_pair))
        negs.append(np.where(drawn >= 0, members[np.maximum(drawn, 0)], -1))
    if not pairs_q:
        return {"query": np.zeros(0, np.int64), **{f"{m}@{k}": np.zeros(0) for k in ks for m in ("hr", "ndcg")},
                "mrr": np.zeros(0)}
    pair_query, pair_item, pair_negs = np.concatenate(pairs_q), np.concatenate(pairs_item), np.concatenate(negs)
    rank = np.zeros(len(pair_query))
    for start in range(0, len(pair_query), block):
        sl = slice(start, start + block)
        scores = np.asarray(score_block(pair_query[sl]), dtype=np.float64)
        rows = np.arange(scores.shape[0])
        positive = scores[rows, pair_item[sl]][:, None]
        negative = np.take_along_axis(scores, np.maximum(pair_negs[sl], 0), 1)
        valid = pair_negs[sl] >= 0
        rank[sl] = ((negative > positive) & valid).sum(1) + 0.5 * ((negative == positive) & valid).sum(1)
    out: dict[str, np.ndarray] = {"query": pair_query}
    for k in ks:
        inside = rank < k
        out[f"hr@{k}"] = inside.astype(float)
        out[f"ndcg@{k}"] = np.where(inside, 1.0 / np.log2(rank + 2.0), 0.0)
    out["mrr"] = 1.0 / (rank + 1.0)
    return out


def per_domain_table(per_query: dict[str, np.ndarray], domain_of: np.ndarray, domains: Sequence[str],
                     count_name: str = "queries") -> pd.DataFrame:
    """Mean of each metric per line and over all queries (row "ALL")."""
    metrics = [k for k in per_query if k != "query"]
    records = []
    for d, name in list(enumerate(domains)) + [(None, "ALL")]:
        mask = np.ones(len(domain_of), bool) if d is None else domain_of == d
        if not mask.any():
            continue
        records.append({"domain": name, count_name: int(mask.sum()),
                        **{m: float(per_query[m][mask].mean()) for m in metrics}})
    return pd.DataFrame(records).set_index("domain")


def popularity_scores(catalogue: Catalogue, queries: RankingQueries) -> ScoreBlock:
    """The sanity baseline: an item's training clicks in the query's line (ties broken by clicks
    in every line), the same list for every user."""
    total = catalogue.positives.sum(0).astype(np.float64)
    score = catalogue.positives.astype(np.float64) + total / (total.max() + 1.0)
    return lambda positions: score[queries.domain[positions]]
