"""Cold-start transfer evaluation: how a line ranks its items for users it has never seen.

The queries are one line's held-out clicks (one query per user, see :mod:`mdrec.evaluation.ranking`),
split into two groups by the training split: **cold** users have no training row in that line
(what :func:`mdrec.data.splits.cold_user_split` makes), **warm** users have some. A method that
helps cold users and hurts warm ones shows it in the second group.

Two protocols per query, both with the user's earlier clicks removed from the ranking:

- full: recall@10, recall@50 and NDCG@10 against the line's whole catalogue;
- sampled (CDRIB's and DisenCDR's, labelled as such): each held-out item against 999 items drawn
  from the line's catalogue among those the user never clicked; HR@10, NDCG@10 and MRR, averaged
  over the user's held-out items so that every user weighs one.

Gains are paired user-bootstrap intervals of the difference of per-user means (the same users,
the same sampled negatives for every method).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import DOMAIN, Log
from mdrec.evaluation.ranking import RankingQueries, ScoreBlock, full_ranking, sampled_ranking
from mdrec.evaluation.stats import bootstrap_user_means, percentile_interval
from mdrec.spec import Spec

GROUPS = ("cold", "warm")
FULL = ("recall@10", "recall@50", "ndcg@10")
SAMPLED = ("sampled_hr@10", "sampled_ndcg@10", "sampled_mrr")
METRICS = FULL + SAMPLED


def line_queries(queries: RankingQueries, catalogue: Catalogue, line: str) -> RankingQueries:
    """The queries of one line (the target line's held-out users)."""
    if line not in catalogue.domains:
        raise ValueError(f"line '{line}' is not in the catalogue ({', '.join(catalogue.domains)})")
    return queries.subset(queries.domain == catalogue.domains.index(line))


def user_groups(queries: RankingQueries, train: Log, spec: Spec, catalogue: Catalogue) -> np.ndarray:
    """"cold" or "warm" per query [Q]: whether its user has any training row in the query's line."""
    frame = train.frame
    known = set(zip(frame[spec.user_id.name].to_numpy(dtype=object).tolist(),
                    frame[DOMAIN].to_numpy(dtype=object).tolist()))
    return np.array(["warm" if (u, catalogue.domains[d]) in known else "cold"
                     for u, d in zip(queries.users.tolist(), queries.domain.tolist())], dtype=object)


def per_user_metrics(score: ScoreBlock, queries: RankingQueries, membership: np.ndarray, *,
                     negatives: int = 999, seed: int = 0) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per query, float [Q]. ``seed`` draws the sampled negatives:
    keep it fixed across methods so that they face the same negatives."""
    full = full_ranking(score, queries, membership, ks=(10, 50))
    out = {m: full[m] for m in FULL}
    pairs = sampled_ranking(score, queries, membership, ks=(10,), negatives=negatives, seed=seed)
    counts = np.bincount(pairs["query"], minlength=len(queries)).astype(np.float64)
    for name, key in zip(SAMPLED, ("hr@10", "ndcg@10", "mrr")):
        sums = np.bincount(pairs["query"], weights=pairs[key], minlength=len(queries))
        # A query whose held-out items are all outside the catalogue has no pair: it counts 0.
        out[name] = np.divide(sums, counts, out=np.zeros(len(queries)), where=counts > 0)
    return out


def group_table(per_method: Mapping[str, Mapping[str, np.ndarray]], groups: np.ndarray) -> pd.DataFrame:
    """Mean of each metric per method and user group: rows (method, users), columns ``count``
    (users in the group) and :data:`METRICS`."""
    records = []
    for method, values in per_method.items():
        for group in GROUPS:
            mask = groups == group
            if mask.any():
                records.append({"method": method, "users": group, "count": int(mask.sum()),
                                **{m: float(values[m][mask].mean()) for m in METRICS}})
    return pd.DataFrame(records).set_index(["method", "users"])


def gain_intervals(per_method: Mapping[str, Mapping[str, np.ndarray]], reference: str, groups: np.ndarray,
                   users: np.ndarray, *, metrics: Sequence[str] = ("recall@10", "ndcg@10"),
                   n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Each method's gain over ``reference`` per user group: the mean difference and its paired
    user-bootstrap percentile interval. Rows (method, users); columns ``gain <metric>``, ``low
    <metric>``, ``high <metric>``."""
    base = per_method[reference]
    records = []
    for method, values in per_method.items():
        if method == reference:
            continue
        for group in GROUPS:
            mask = groups == group
            if not mask.any():
                continue
            paired = {m: np.stack([base[m][mask], values[m][mask]], 1) for m in metrics}
            replicates = bootstrap_user_means(paired, users[mask], n_bootstrap=n_bootstrap, seed=seed)["ALL"]
            row: dict = {"method": method, "users": group}
            for m in metrics:
                diff = replicates[m][:, 1] - replicates[m][:, 0]
                low, high = percentile_interval(diff, level)
                row.update({f"gain {m}": float(values[m][mask].mean() - base[m][mask].mean()),
                            f"low {m}": low, f"high {m}": high})
            records.append(row)
    return pd.DataFrame(records).set_index(["method", "users"]) if records else pd.DataFrame()
