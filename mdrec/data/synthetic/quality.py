"""What the true click model can achieve, and the log's meta description.

The true click probability of every impression is known, so the log can state the best AUC any
model could reach on it. AUC and group AUC come from :mod:`mdrec.ranking_stats`, the code that
also scores models in :mod:`mdrec.evaluation.metrics`; only the rule for a missing class differs:
here :func:`bayes_auc` raises and the meta says null, where the evaluation metrics say nan.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mdrec.data.synthetic.config import COLD_FRACTION, COLUMNS, SyntheticConfig
from mdrec.errors import MdrecError
from mdrec.ranking_stats import auc, gauc


def bayes_auc(probabilities, labels) -> float:
    """AUC of the true click probabilities against the drawn labels (what a perfect model gets).

    probabilities, labels: any shape, flattened to [n]; labels 0/1. Raises :class:`MdrecError` when
    the labels hold a single class (or none), where :func:`mdrec.ranking_stats.auc` says nan.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if p.shape != y.shape:
        raise MdrecError(f"probabilities ({p.size}) and labels ({y.size}) differ in length")
    try:
        value = auc(y, p)
    except ValueError as exc:  # labels other than 0/1, non-finite probabilities
        raise MdrecError(f"bayes_auc: {exc}") from None
    if math.isnan(value):
        raise MdrecError("AUC needs both clicks and non-clicks among the labels",
                         hint="use more impressions or a domain with clicks")
    return value


def expected_bayes_auc(probabilities) -> float:
    """Expected AUC of the Bayes-optimal scorer over label draws.

    With labels y_i ~ Bernoulli(p_i) drawn independently and the scorer ranking by p itself::

        sum_{i != j} p_i (1 - p_j) ([p_i > p_j] + 0.5 [p_i == p_j]) / sum_{i != j} p_i (1 - p_j)

    (a ratio of expectations). Computed in O(n log n): sort, then for each distinct value the
    mass of (1 - p_j) strictly below it comes from a prefix sum; ties contribute half.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size < 2:
        raise MdrecError("expected_bayes_auc needs at least 2 probabilities")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise MdrecError("probabilities must be finite numbers in [0, 1]")
    values, counts = np.unique(p, return_counts=True)  # sorted ascending
    neg_mass = counts * (1.0 - values)                  # sum of (1 - p_j) over each tie group
    below = np.concatenate(([0.0], np.cumsum(neg_mass)[:-1]))  # strictly smaller values
    numerator = np.sum(counts * values * below) \
        + 0.5 * np.sum(values * (1.0 - values) * counts * (counts - 1.0))
    denominator = p.sum() * (1.0 - p).sum() - np.sum(p * (1.0 - p))
    if denominator <= 0:
        raise MdrecError("expected AUC is undefined when every probability is 0 or every one is 1")
    return float(numerator / denominator)


def bayes_gauc(probabilities: np.ndarray, labels: np.ndarray, users: np.ndarray) -> float | None:
    """Impression-weighted mean per-user AUC of the true probabilities (GAUC) over users with both
    classes; None when no user has both. probabilities, labels (0/1), users (int): [n]."""
    # gauc adds the users up in order of first appearance. Rows in user order add them up in
    # user order, as this generator always has, so meta.json keeps its last digits.
    order = np.argsort(users, kind="stable")
    value = gauc(labels[order], probabilities[order], users[order]).value
    return None if math.isnan(value) else value


def _or_none(fn, *args):
    try:
        return fn(*args)
    except MdrecError:
        return None  # e.g. a tiny domain without clicks


def describe(cfg: SyntheticConfig, frame: pd.DataFrame, prob: np.ndarray, user_of: np.ndarray,
             item_of: np.ndarray, dom: np.ndarray, items: dict, users: dict, click_model: dict) -> dict:
    """The JSON-ready meta: what was generated and how well the true model can do.

    prob, user_of, item_of, dom: one value per row of ``frame`` [n] (true probability, user,
    item and domain indices); ``items`` / ``users``: the generator's per-item / per-user arrays.
    """
    click = frame["click"].to_numpy()
    user_dom = np.zeros((cfg.num_users, len(cfg.domains)), dtype=bool)  # user u is active in line d
    user_dom[user_of, dom] = True
    seen = user_dom.any(axis=1)
    shown = np.zeros_like(items["member"])  # item i was shown in line d
    shown[item_of, dom] = True
    per_domain = {name: _domain_meta(d, prob, click, user_of, dom, user_dom, items, shown)
                  for d, name in enumerate(cfg.domains)}
    ts = frame["timestamp"].to_numpy()
    cold_cut = cfg.start_timestamp + COLD_FRACTION * cfg.days * 86400
    cold_user_idx = np.flatnonzero(users["cold"])
    cold_item_idx = np.flatnonzero(items["intro"] > 0)
    return {
        "generator": "mdrec.data.synthetic",
        "config": cfg.to_dict(),
        "columns": list(COLUMNS),
        "rows": int(len(frame)),
        "ctr": float(click.mean()),
        "bayes_auc": _or_none(bayes_auc, prob, click),
        "expected_bayes_auc": _or_none(expected_bayes_auc, prob),
        "bayes_gauc": bayes_gauc(prob, click, user_of),
        "domains": per_domain,
        "users": _users_meta(cfg, user_of, user_dom),
        "items": {
            "total": int(cfg.num_items),
            "shown": int(shown.any(axis=1).sum()),
            "in_several_catalogues": int(np.sum(items["member"].sum(axis=1) > 1)),
            "configured_catalogue_overlap": float(cfg.catalogue_overlap),
        },
        "cold": {
            "cutoff_timestamp": int(math.ceil(cold_cut)),
            "users": int(cold_user_idx.size),
            "users_shown": int(seen[cold_user_idx].sum()),
            "items": int(cold_item_idx.size),
            "items_shown": int(shown[cold_item_idx].any(axis=1).sum()),
        },
        "time": {"first_timestamp": int(ts[0]), "last_timestamp": int(ts[-1])},
        "click_model": click_model,
    }


def _domain_meta(d: int, prob: np.ndarray, click: np.ndarray, user_of: np.ndarray, dom: np.ndarray,
                 user_dom: np.ndarray, items: dict, shown: np.ndarray) -> dict:
    """The meta of line ``d``: its rows, CTR, achievable AUC, users and catalogue."""
    rows = dom == d
    multi = user_dom.sum(axis=1) > 1
    cat = items["catalogues"][d]
    others = np.delete(items["member"], d, axis=1).any(axis=1)  # item is in another line's catalogue
    return {
        "rows": int(rows.sum()),
        "share": float(rows.mean()),
        "ctr": float(click[rows].mean()) if rows.any() else None,
        "mean_true_probability": float(prob[rows].mean()) if rows.any() else None,
        "bayes_auc": _or_none(bayes_auc, prob[rows], click[rows]),
        "expected_bayes_auc": _or_none(expected_bayes_auc, prob[rows]) if rows.sum() > 1 else None,
        "bayes_gauc": bayes_gauc(prob[rows], click[rows], user_of[rows]),
        "users": int(user_dom[:, d].sum()),
        "users_also_in_other_domains": float(np.mean(multi[user_dom[:, d]])) if user_dom[:, d].any() else None,
        "catalogue_size": int(cat.size),
        "catalogue_overlap": float(np.mean(others[cat])) if cat.size else None,
        "items_shown": int(shown[:, d].sum()),
    }


def _users_meta(cfg: SyntheticConfig, user_of: np.ndarray, user_dom: np.ndarray) -> dict:
    """Active users, how many use several lines (overall and per pair of lines), events per user."""
    names, n_dom = cfg.domains, len(cfg.domains)
    seen = user_dom.any(axis=1)
    multi = user_dom.sum(axis=1) > 1
    pair_users = np.zeros((n_dom, n_dom), dtype=np.int64)
    for a in range(n_dom):
        for b in range(n_dom):
            pair_users[a, b] = int(np.sum(user_dom[:, a] & user_dom[:, b]))
    return {
        "active": int(seen.sum()),
        "multi_domain_share": float(multi[seen].mean()),
        "configured_user_overlap": float(cfg.user_overlap),
        "pairs": {f"{names[a]}&{names[b]}": int(pair_users[a, b])
                  for a in range(n_dom) for b in range(a + 1, n_dom)},
        "impressions_per_user": {q: float(x) for q, x in zip(
            ("min", "median", "max"), np.percentile(np.bincount(user_of, minlength=cfg.num_users)[seen],
                                                    [0, 50, 100]))},
    }
