"""Statistics for offline A/B comparisons of two scorers on one log (numpy / scipy only; progress
of long bootstraps through :mod:`mdrec.progress`).

Everything here compares a control (A) and a treatment (B) scored on the *same* rows, so every
interval and test is paired. Deltas are always B − A.

* :func:`user_weights` — the paired user-cluster bootstrap: a replicate draws each user's
  multiplicity (resampling users with replacement, a multinomial over users) and every row of a
  user gets its user's weight. One user's events are correlated (same taste, same session), so
  resampling events would understate the variance; resampling users does not.
* :func:`weighted_auc`, :func:`group_aucs` — metrics under those weights, vectorised over a chunk
  of replicates (sorting / rank sums, no Python loop over rows or replicates).
* :func:`paired_user_bootstrap` — AUC, GAUC, logloss, calibration and ECE of both sides on each
  replicate, for several row slices at once (one set of user weights shared by all slices and both
  sides: that is what makes the deltas paired).
* :func:`delong_test` — DeLong's test for two correlated AUCs with the fast midrank algorithm
  (Sun & Xu 2014); with ``groups`` the variance is Obuchowski's (1997) cluster-robust version
  (per-user sums of the DeLong placements), which is what the A/B verdict uses.
* :func:`holm` — Holm's step-down adjustment; :func:`mde` — the minimum detectable effect.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from mdrec.progress import Progress

NAN = float("nan")
# Metrics computed by paired_user_bootstrap, and which direction is an improvement.
CTR_METRICS = ("auc", "gauc", "logloss", "calibration", "ece")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False, "ece": False, "calibration": None,
                    "miscalibration": False, "recall": True, "ndcg": True}
_LOGLOSS_EPS = 1e-7  # as mdrec.evaluation.metrics.logloss


def higher_is_better(metric: str) -> bool | None:
    """True / False for metrics with a direction; None (no verdict) for calibration, whose best
    value is 1 (its distance from 1, "miscalibration", has a direction)."""
    return HIGHER_IS_BETTER.get(metric.split("@")[0])


# --------------------------------------------------------------------------------------------
# multiple testing, power
# --------------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), same order as given.

    NaN p-values (an untestable slice) stay NaN and do not count towards the family size.
    The i-th smallest of m p-values becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, NAN)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def two_sided_p(delta: float, se: float) -> float:
    """Normal-approximation two-sided p-value of ``delta`` with standard error ``se``."""
    if not (np.isfinite(delta) and np.isfinite(se)):
        return NAN
    if se <= 0:
        return 1.0 if delta == 0 else 0.0
    return float(2.0 * norm.sf(abs(delta) / se))


def mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided level-``alpha`` test with ``power``:
    ``(z_{1-alpha/2} + z_{power}) * se``, where ``se`` is the standard error of the delta at the
    log's size (under the null, approximated by the observed bootstrap / DeLong standard error)."""
    if not np.isfinite(se):
        return NAN
    return float((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * se)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(low, high) percentile interval of bootstrap ``replicates`` (B,), ignoring NaN replicates."""
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < 2:
        return NAN, NAN
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeLongResult:
    """AUC of control (a) and treatment (b), their difference b − a, its standard error, z and the
    two-sided p-value. ``clustered``: the variance allows correlation within groups (users)."""

    auc_a: float
    auc_b: float
    delta: float
    se: float
    z: float
    p_value: float
    clustered: bool


def delong_test(labels, scores_a, scores_b, groups=None) -> DeLongResult:
    """DeLong's test of AUC(b) − AUC(a) for two scorers of the same rows.

    labels, scores_a, scores_b: (n,); groups: optional (n,) cluster ids (users).

    Fast DeLong (Sun & Xu 2014): with midranks ``Tz`` over all rows, ``Tx`` over positives and
    ``Ty`` over negatives, a positive's placement is ``V10 = (Tz - Tx) / N`` (share of negatives
    below it, ties ½) and a negative's is ``V01 = 1 - (Tz - Ty) / M``; AUC is the mean of either.
    Without groups, ``Var = S10 / M + S01 / N`` from the placements' sample covariances. With
    groups, the delta's influence of cluster i is ``e_i = Σ_pos(V10 − Δ)/M + Σ_neg(V01 − Δ)/N``
    (placement differences b − a) and ``Var = I/(I−1) Σ e_i²`` (Obuchowski 1997): rows of one user
    are not treated as independent evidence. NaN when one class is missing.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.vstack([np.asarray(scores_a, dtype=np.float64).ravel(), np.asarray(scores_b, dtype=np.float64).ravel()])
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    clustered = groups is not None
    if m == 0 or n == 0:
        return DeLongResult(NAN, NAN, NAN, NAN, NAN, NAN, clustered)
    x, z = s[:, pos], s[:, ~pos]
    tx = rankdata(x, axis=1)
    ty = rankdata(z, axis=1)
    tz = rankdata(np.hstack([x, z]), axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n          # (2, M)
    v01 = 1.0 - (tz[:, m:] - ty) / m    # (2, N)
    delta = float(aucs[1] - aucs[0])
    if not clustered:
        cov = np.cov(v10) / m + np.cov(v01) / n if m > 1 and n > 1 else np.full((2, 2), NAN)
        var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    else:
        codes = _codes(groups)
        k = int(codes.max()) + 1
        d10 = (v10[1] - v10[0]) - delta
        d01 = (v01[1] - v01[0]) - delta
        influence = (np.bincount(codes[pos], weights=d10, minlength=k) / m
                     + np.bincount(codes[~pos], weights=d01, minlength=k) / n)
        var = k / (k - 1.0) * float(np.sum(influence ** 2)) if k > 1 else NAN
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else NAN
    z_value = delta / se if se and np.isfinite(se) and se > 0 else (0.0 if delta == 0 else NAN)
    return DeLongResult(float(aucs[0]), float(aucs[1]), delta, se, float(z_value), two_sided_p(delta, se), clustered)


def _codes(groups) -> np.ndarray:
    """Integer codes 0..G-1 (n,) of any group ids (users)."""
    return pd.factorize(np.asarray(groups))[0].astype(np.int64)


# --------------------------------------------------------------------------------------------
# weighted metrics (a chunk of bootstrap replicates at a time)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SortedScores:
    """One score vector prepared for :func:`weighted_auc`: ascending order and tie blocks.

    order: (n,) row order by score; block: (n,) tie-block id of each sorted row; starts/ends:
    (K,) first / last sorted position of each block; positive: (P,) sorted positions of positives.
    """

    order: np.ndarray
    block: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray
    positive: np.ndarray

    @staticmethod
    def of(labels: np.ndarray, scores: np.ndarray) -> "SortedScores":
        order = np.argsort(scores, kind="stable")
        s = scores[order]
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] != s[:-1]
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(s)) - 1
        y = np.asarray(labels, dtype=np.float64)[order]
        return SortedScores(order, np.cumsum(new) - 1, starts, ends, y, np.flatnonzero(y == 1))


def weighted_auc(prepared: SortedScores, weights: np.ndarray) -> np.ndarray:
    """AUC under non-negative row weights: ``Σ_ij w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W+ W-)``
    over positives i and negatives j.

    weights: (c, n) row weights in the *original* row order (c replicates). Returns (c,); NaN
    where a replicate has no positive or no negative weight. O(c n) after the one sort.
    """
    w = weights[:, prepared.order]
    neg = w * (1.0 - prepared.labels)
    through = np.cumsum(neg, axis=1)[:, prepared.ends]         # negative weight up to each block's end
    before = np.hstack([np.zeros((len(w), 1)), through[:, :-1]])
    inside = through - before
    b = prepared.block[prepared.positive]
    wp = w[:, prepared.positive]
    numerator = (wp * (before[:, b] + 0.5 * inside[:, b])).sum(axis=1)
    denominator = wp.sum(axis=1) * through[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, NAN)


def group_aucs(labels: np.ndarray, scores: np.ndarray, codes: np.ndarray, n_groups: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group AUC by rank sums: (auc (G,), rows (G,), valid (G,) = group has both classes).

    codes: (n,) ints in [0, n_groups). Ties count ½, as in ``roc_auc_score`` and ``metrics.gauc``.
    """
    n = len(labels)
    size = np.bincount(codes, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(codes, weights=labels, minlength=n_groups)
    if n == 0:
        return np.full(n_groups, NAN), size, np.zeros(n_groups, dtype=bool)
    order = np.lexsort((scores, codes))
    c, s, y = codes[order], scores[order], labels[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = c[1:] != c[:-1]
    new_block = new_group.copy()
    new_block[1:] |= s[1:] != s[:-1]
    position = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    starts = position[new_block]
    ends = np.append(starts[1:], n)
    mid = (starts + ends - 1) / 2.0
    rank = mid[np.cumsum(new_block) - 1] - group_start + 1.0       # 1-based midrank within the group
    rank_pos = np.bincount(c, weights=rank * y, minlength=n_groups)
    n_neg = size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(valid, (rank_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg), NAN)
    return auc, size, valid


# --------------------------------------------------------------------------------------------
# the paired user bootstrap
# --------------------------------------------------------------------------------------------
def user_weights(n_users: int, n_bootstrap: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Bootstrap user multiplicities, ``chunk`` replicates at a time: (c, n_users) float64.

    Each replicate resamples the ``n_users`` users with replacement (multinomial counts). The
    chunks come from one seeded ``numpy.random.Generator`` drawing rows in order, so the
    replicates depend on ``seed`` only, not on the chunk size. A chunk counts as done when the
    next one is asked for: the progress of a long bootstrap (stderr, see :mod:`mdrec.progress`)
    then follows the caller's work on the chunks, which is the slow part.
    """
    rng = np.random.default_rng(seed)
    uniform = np.full(n_users, 1.0 / n_users)
    done = 0
    with Progress(n_bootstrap, f"paired user bootstrap over {n_users:,} users", unit="resample") as bar:
        while done < n_bootstrap:
            c = min(chunk, n_bootstrap - done)
            yield rng.multinomial(n_users, uniform, size=c).astype(np.float64)
            done += c
            bar.update(done)


@dataclass
class _SliceStats:
    """What one slice needs per replicate, precomputed once.

    users: (n_s,) global user codes of the slice's rows; sorted: per side, for the AUC; sums:
    (n_s, 2 + 2 (2 + bins)) row columns whose weighted sums give every other metric in one matrix
    product: [1, label, then per side: row logloss, p, (label − p) in its ECE bin's column];
    gauc_users / gauc_num / gauc_den: users with both classes in the slice,
    per side ``rows_u * auc_u`` and ``rows_u`` (resampling whole users keeps each user's AUC).
    """

    users: np.ndarray
    sorted: list[SortedScores]
    sums: np.ndarray
    gauc_users: np.ndarray
    gauc_num: np.ndarray          # (G, 2)
    gauc_den: np.ndarray          # (G,)


def _slice_stats(idx: np.ndarray, labels: np.ndarray, sides: Sequence[np.ndarray], users: np.ndarray,
                 ece_bins: int) -> _SliceStats:
    y = labels[idx]
    local, uniq = _factorize_ints(users[idx])
    sorted_, columns, nums = [], [np.ones(len(idx)), y], []
    gauc_users = gauc_den = None
    for scores in sides:
        p = scores[idx]
        sorted_.append(SortedScores.of(y, p))
        clipped = np.clip(p, _LOGLOSS_EPS, 1.0 - _LOGLOSS_EPS)
        bins = np.clip((p * ece_bins).astype(np.int64), 0, ece_bins - 1)
        gap = np.zeros((len(idx), ece_bins))
        gap[np.arange(len(idx)), bins] = y - p          # ECE: |Σ_bin w (y − p)| summed over bins
        columns += [-(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped)), p]
        columns += list(gap.T)
        auc_u, size_u, valid = group_aucs(y, p, local, len(uniq))
        gauc_users, gauc_den = uniq[valid], size_u[valid]
        nums.append(size_u[valid] * auc_u[valid])
    return _SliceStats(users[idx], sorted_, np.stack(columns, axis=1), gauc_users,
                       np.stack(nums, axis=1), gauc_den)


def _factorize_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int64), uniq


def _chunk_metrics(st: _SliceStats, w_users: np.ndarray, ece_bins: int) -> dict[str, np.ndarray]:
    """metric -> (c, 2) values of (control, treatment) on one chunk of replicates."""
    rw = w_users[:, st.users]                                    # (c, n_s) row weights
    sums = rw @ st.sums                                          # (c, k)
    total, clicks = sums[:, 0], sums[:, 1]
    gauc_w = w_users[:, st.gauc_users]
    gauc_den = gauc_w @ st.gauc_den
    gauc_num = gauc_w @ st.gauc_num
    out: dict[str, list] = {m: [] for m in CTR_METRICS}
    width = 2 + ece_bins
    with np.errstate(invalid="ignore", divide="ignore"):
        for side in range(2):
            base = 2 + side * width
            out["auc"].append(weighted_auc(st.sorted[side], rw))
            out["gauc"].append(np.where(gauc_den > 0, gauc_num[:, side] / gauc_den, NAN))
            out["logloss"].append(np.where(total > 0, sums[:, base] / total, NAN))
            out["calibration"].append(np.where(clicks > 0, sums[:, base + 1] / clicks, NAN))
            gaps = sums[:, base + 2: base + width]
            out["ece"].append(np.where(total > 0, np.abs(gaps).sum(axis=1) / total, NAN))
    return {m: np.stack(v, axis=1) for m, v in out.items()}


def paired_user_bootstrap(labels, control, treatment, users, slices: Mapping[str, np.ndarray], *,
                          n_bootstrap: int = 1000, seed: int = 0, ece_bins: int = 10,
                          max_elements: int = 2_000_000) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap replicates of the CTR metrics of both sides, paired, resampling users.

    labels, control, treatment: (n,) 0/1 labels and the two sides' probabilities; users: (n,) user
    ids (the resampling unit; pass ``np.arange(n)`` for an event-level bootstrap); slices: name ->
    (n,) bool mask. Returns ``{slice: {metric: (n_bootstrap, 2)}}`` with columns (control,
    treatment) for the metrics in ``CTR_METRICS``. Every slice and both sides use the same user
    weights in a replicate, so ``r[:, 1] - r[:, 0]`` are paired delta replicates. A replicate in
    which a slice's metric is undefined (e.g. no positive drawn) holds NaN.
    """
    y = np.asarray(labels, dtype=np.float64)
    sides = [np.asarray(control, dtype=np.float64), np.asarray(treatment, dtype=np.float64)]
    codes = _codes(users)
    n_users = int(codes.max()) + 1 if len(codes) else 0
    stats = {name: _slice_stats(np.flatnonzero(mask), y, sides, codes, ece_bins)
             for name, mask in slices.items() if np.any(mask)}
    widest = max([len(st.users) for st in stats.values()] + [n_users, 1])
    chunk = max(1, min(n_bootstrap, max_elements // widest))
    parts: dict[str, dict[str, list]] = {name: {m: [] for m in CTR_METRICS} for name in stats}
    for w in user_weights(n_users, n_bootstrap, seed, chunk):
        for name, st in stats.items():
            for metric, values in _chunk_metrics(st, w, ece_bins).items():
                parts[name][metric].append(values)
    return {name: {m: np.concatenate(v) for m, v in metrics.items()} for name, metrics in parts.items()}


def bootstrap_user_means(values: Mapping[str, np.ndarray], users, domains: np.ndarray | None = None, *,
                         n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Paired user bootstrap of per-query means (e.g. Recall@K of each retrieval query).

    values: metric -> (q, 2) per-query values of (control, treatment); users: (q,) the query's
    user; domains: optional (q,) line of each query (adds one slice per line). Returns
    ``{slice: {metric: (n_bootstrap, 2)}}`` of weighted means, as :func:`paired_user_bootstrap`.
    """
    codes = _codes(users)
    n_users = int(codes.max()) + 1
    slices = {"ALL": np.ones(len(codes), dtype=bool)}
    if domains is not None:
        for d in sorted(set(domains.tolist())):
            slices[f"domain={d}"] = domains == d
    chunk = max(1, min(n_bootstrap, 2_000_000 // max(n_users, 1)))
    parts: dict[str, dict[str, list]] = {s: {m: [] for m in values} for s in slices}
    # per-user sums once: a replicate's mean is (W @ sums) / (W @ counts)
    sums = {s: {m: np.stack([np.bincount(codes[mask], weights=v[mask, j], minlength=n_users) for j in (0, 1)], 1)
                for m, v in values.items()} for s, mask in slices.items()}
    counts = {s: np.bincount(codes[mask], minlength=n_users).astype(np.float64) for s, mask in slices.items()}
    for w in user_weights(n_users, n_bootstrap, seed, chunk):
        for s in slices:
            den = w @ counts[s]
            with np.errstate(invalid="ignore", divide="ignore"):
                for m in values:
                    parts[s][m].append(np.where(den[:, None] > 0, (w @ sums[s][m]) / den[:, None], NAN))
    return {s: {m: np.concatenate(v) for m, v in metrics.items()} for s, metrics in parts.items()}
