"""The offline A/B's comparison, arrays in and tables out: paired deltas per slice and metric with
user-bootstrap intervals, DeLong's test for AUC, Holm's correction, a verdict and the minimum
detectable effect; and inverse-propensity estimates of each side's click rate.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.evaluation import metrics as M
from mdrec.evaluation import stats

NO_DIFFERENCE = "no detectable difference"
# The CTR metrics, in report order; miscalibration = |predicted / observed CTR − 1| (lower is better)
METRICS = ("auc", "gauc", "logloss", "calibration", "miscalibration", "ece")


def _verdict(metric: str, delta: float, low: float, high: float, p_holm: float, alpha: float) -> str:
    direction = stats.higher_is_better(metric)
    if direction is None:
        return "n/a"
    if not np.isfinite(p_holm) or not np.isfinite(delta):
        return "untestable"
    if p_holm >= alpha or not (low > 0 or high < 0):
        return NO_DIFFERENCE
    return "better" if (delta > 0) == direction else "worse"


def _point_metrics(y: np.ndarray, p: np.ndarray, users: np.ndarray) -> dict[str, float]:
    calibration = M.calibration(y, p)
    return {"auc": M.auc(y, p), "gauc": M.gauc(y, p, users).value, "logloss": M.logloss(y, p),
            "calibration": calibration, "miscalibration": abs(calibration - 1.0),
            "ece": M.expected_calibration_error(y, p)}


def summarise(points: dict[str, dict[str, tuple[float, float]]], replicates: dict[str, dict[str, np.ndarray]],
              alpha: float, tests: dict[tuple[str, str], stats.DeLongResult] | None = None) -> pd.DataFrame:
    """One row per (slice, metric) from point values (control, treatment), bootstrap replicates
    (B, 2) and optional DeLong results (used for that metric's p-value and MDE)."""
    rows = []
    for name, by_metric in replicates.items():
        for metric, rep in by_metric.items():
            a, b = points[name][metric]
            delta = b - a
            deltas = rep[:, 1] - rep[:, 0]
            finite = deltas[np.isfinite(deltas)]
            se = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
            low, high = stats.percentile_interval(deltas)
            test = (tests or {}).get((name, metric))
            if test is not None:
                p, test_se, method = test.p_value, test.se, "DeLong (user-clustered)"
            else:
                p, test_se, method = stats.two_sided_p(delta, se), se, "user bootstrap"
            rows.append({"slice": name, "metric": metric, "control": a, "treatment": b, "delta": delta,
                         "ci_low": low, "ci_high": high, "se": test_se, "p": p, "test": method,
                         "mde": stats.mde(test_se, alpha), "bootstrap_invalid": int(len(deltas) - len(finite))})
    table = pd.DataFrame(rows)
    # Holm per metric across the slices (each metric's family of tests)
    table["p_holm"] = table.groupby("metric", sort=False)["p"].transform(lambda p: stats.holm(p.to_numpy()))
    table["verdict"] = [_verdict(r.metric, r.delta, r.ci_low, r.ci_high, r.p_holm, alpha)
                        for r in table.itertuples()]
    return table


def compare_scores(labels, control, treatment, users, slices: dict[str, np.ndarray] | None = None, *,
                   n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The CTR comparison on arrays: (metrics table, slice sizes table).

    labels, control, treatment, users: (n,); slices: name -> (n,) bool mask (default: one slice
    "ALL"). AUC is tested with DeLong's user-clustered test, the rest with the user bootstrap.
    """
    y = np.asarray(labels, dtype=np.float64)
    a = np.asarray(control, dtype=np.float64)
    b = np.asarray(treatment, dtype=np.float64)
    users = np.asarray(users)
    slices = {k: v for k, v in (slices or {"ALL": np.ones(len(y), dtype=bool)}).items() if np.any(v)}
    replicates = stats.paired_user_bootstrap(y, a, b, users, slices, n_bootstrap=n_bootstrap, seed=seed)
    points, tests, sizes = {}, {}, []
    for name, mask in slices.items():
        ys, us = y[mask], users[mask]
        pa, pb = _point_metrics(ys, a[mask], us), _point_metrics(ys, b[mask], us)
        points[name] = {m: (pa[m], pb[m]) for m in METRICS}
        replicates[name] = {m: (np.abs(replicates[name]["calibration"] - 1.0) if m == "miscalibration"
                                else replicates[name][m]) for m in METRICS}
        tests[(name, "auc")] = stats.delong_test(ys, a[mask], b[mask], groups=us)
        g = M.gauc(ys, a[mask], us)
        sizes.append({"slice": name, "rows": int(mask.sum()), "users": int(len(pd.unique(us))),
                      "positives": int(ys.sum()), "ctr": float(ys.mean()),
                      "gauc_users": g.groups_used, "gauc_users_excluded": g.groups_excluded})
    return summarise(points, replicates, alpha, tests), pd.DataFrame(sizes).set_index("slice")


def verdict_table(metrics: pd.DataFrame, sizes: pd.DataFrame, primary: str,
                  secondary: Sequence[str]) -> pd.DataFrame:
    """The printed table: per slice, the sizes, the primary metric in full and the others' verdicts
    (better / worse / n.d. = no detectable difference; "-" without a direction, "?" untestable)."""
    short = {NO_DIFFERENCE: "n.d.", "better": "better", "worse": "worse", "n/a": "-", "untestable": "?"}
    rows = []
    for name in sizes.index:
        part = metrics[metrics["slice"] == name].set_index("metric")
        if primary not in part.index:
            continue
        r = part.loc[primary]
        row = {"slice": name, **sizes.loc[name, [c for c in ("rows", "queries", "users", "positives")
                                                 if c in sizes.columns]].to_dict(),
               f"{primary} A": r["control"], f"{primary} B": r["treatment"], f"Δ{primary}": r["delta"],
               "95% CI": interval_text(r["ci_low"], r["ci_high"]), "p (Holm)": r["p_holm"], "MDE": r["mde"],
               "verdict": r["verdict"]}
        row["verdict"] = short.get(row["verdict"], row["verdict"])
        for metric in secondary:
            if metric in part.index:
                row[metric] = short.get(part.loc[metric, "verdict"], part.loc[metric, "verdict"])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("slice")
    for c in ("rows", "queries", "users", "positives"):
        if c in table.columns:
            table[c] = table[c].astype(np.int64)
    return table


def interval_text(low: float, high: float) -> str:
    """A 95% interval as printed: [+low, +high], or - when it is undefined."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "-"
    return f"[{low:+.4f}, {high:+.4f}]"


def ips_table(labels, propensity, control, treatment, users, *, n_bootstrap: int = 1000, seed: int = 0
              ) -> pd.DataFrame:
    """IPS and self-normalised IPS estimates of the click rate each side's policy would get.

    The log has no request groups, so a side's policy is taken to be: for each user, show one of
    the user's logged items with probability proportional to the side's score,
    ``pi(i) = s_i / Σ_{j in user's rows} s_j`` (its normalised score within the user's candidate
    set). With the logging propensity ``p_i`` of the shown item and ``w_i = pi(i) / p_i``:
    ``IPS = Σ y_i w_i / n`` and ``SNIPS = Σ y_i w_i / Σ w_i`` estimate the clicks per impression
    under that policy. Both are *estimates* (unbiased / consistent only if the logging policy gave
    every candidate a chance and the candidate set is the user's logged items); the row
    "logging policy" is the observed CTR. Intervals: the same paired user bootstrap.
    Returns rows control / treatment / "treatment − control" / logging policy with ips, snips and
    their 95% intervals.
    """
    y = np.asarray(labels, dtype=np.float64)
    p0 = np.asarray(propensity, dtype=np.float64)
    codes = pd.factorize(np.asarray(users))[0]
    n_users = int(codes.max()) + 1
    sums = {}
    for name, scores in (("control", control), ("treatment", treatment)):
        s = np.asarray(scores, dtype=np.float64)
        total = np.bincount(codes, weights=s, minlength=n_users)
        count = np.bincount(codes, minlength=n_users)
        pi = np.where(total[codes] > 0, s / np.where(total[codes] > 0, total[codes], 1.0), 1.0 / count[codes])
        w = pi / p0
        sums[name] = (np.bincount(codes, weights=y * w, minlength=n_users), np.bincount(codes, weights=w, minlength=n_users))
    rows_u = np.bincount(codes, minlength=n_users).astype(np.float64)
    clicks_u = np.bincount(codes, weights=y, minlength=n_users)
    point = {name: (yw.sum() / rows_u.sum(), yw.sum() / ww.sum()) for name, (yw, ww) in sums.items()}
    reps: dict[str, list] = {"control": [], "treatment": [], "logging": []}
    chunk = max(1, min(n_bootstrap, 2_000_000 // n_users))
    for wu in stats.user_weights(n_users, n_bootstrap, seed, chunk):
        n_w = wu @ rows_u
        for name, (yw, ww) in sums.items():
            reps[name].append(np.stack([(wu @ yw) / n_w, (wu @ yw) / (wu @ ww)], axis=1))
        reps["logging"].append(np.stack([(wu @ clicks_u) / n_w] * 2, axis=1))
    reps = {k: np.concatenate(v) for k, v in reps.items()}
    reps["treatment − control"] = reps["treatment"] - reps["control"]
    observed = y.mean()
    point["logging"] = (observed, observed)
    point["treatment − control"] = tuple(np.subtract(point["treatment"], point["control"]))
    rows = []
    for name in ("control", "treatment", "treatment − control", "logging"):
        row = {"policy": "logging policy (observed CTR)" if name == "logging" else name}
        for j, est in enumerate(("ips", "snips")):
            row[est] = float(point[name][j])
            row[f"{est} 95% CI"] = interval_text(*stats.percentile_interval(reps[name][:, j]))
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


def legend(alpha: float = 0.05, family: str = "ctr") -> str:
    """The line printed under the verdict table."""
    tests = ("DeLong (user-clustered) for AUC, bootstrap for the others" if family == "ctr"
             else "bootstrap standard error")
    text = (f"Δ = treatment − control; 95% CI: paired bootstrap over users; p (Holm): {tests}, Holm-adjusted "
            f"across slices; verdict at α={alpha}; MDE: smallest |Δ| detected with power 0.8; "
            f"n.d. = {NO_DIFFERENCE}")
    if family == "ctr":
        text += "; miscalibration = |predicted/observed CTR − 1|"
    return text
