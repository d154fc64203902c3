"""Users of the synthetic log and their events: latent taste, demographics, arrival, activity,
home and extra business lines, and when each event happens (see the package doc, "Users")."""
from __future__ import annotations

import numpy as np

from mdrec.data.synthetic.config import COLD_FRACTION, SyntheticConfig

_AGE_SHARES = np.array([0.18, 0.30, 0.24, 0.15, 0.09, 0.04])
_HOME_BOOST = 4.0  # a user's home domain gets this many times the weight of another domain of theirs
# Relative activity per UTC hour: quiet at night, peaks at lunch and in the evening.
_HOURLY = np.array([0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.70, 0.72, 0.80,
                    0.90, 0.80, 0.70, 0.70, 0.72, 0.78, 0.85, 0.95, 1.00, 0.95, 0.75, 0.45])


def zipf_weights(ranks: np.ndarray, size: int, exponent: float) -> np.ndarray:
    """Zipf-Mandelbrot weights (rank + 1 + size/50)^-exponent: a heavy head without one
    element taking a large slice of all traffic."""
    return (ranks + 1.0 + size / 50.0) ** -exponent


def make_users(rng, cfg: SyntheticConfig, comp_std: float) -> dict:
    """Per-user arrays (``num_users`` rows, k = ``latent_dim``): ``u`` [users, k], ``bias``,
    ``age`` / ``gender`` (indices), ``cold`` (bool), ``arrival`` (fraction of the span), ``counts``
    (events), ``home`` (domain index), ``active_order`` [users, domains] (home first, then the
    extra domains, -1 padded) and ``ids``."""
    n_users, k, n_dom = cfg.num_users, cfg.latent_dim, len(cfg.domains)
    shares = np.asarray(cfg.domain_shares, dtype=np.float64)
    u = rng.normal(0.0, comp_std, (n_users, k))
    bias = rng.normal(0.0, 0.35, n_users)

    # Age: a noisy projection of u, cut at population quantiles so bucket sizes are realistic.
    age_dir = rng.normal(size=k)
    age_score = u @ (age_dir / np.linalg.norm(age_dir)) + rng.normal(0.0, comp_std, n_users)
    cuts = np.quantile(age_score, np.cumsum(_AGE_SHARES)[:-1])
    age = np.searchsorted(cuts, age_score).astype(np.int64)
    gender_dir = rng.normal(size=k)
    gender_score = u @ (gender_dir / np.linalg.norm(gender_dir)) + rng.normal(0.0, comp_std, n_users)
    gender = np.where(gender_score > 0, 0, 1)
    gender[rng.random(n_users) < 0.07] = 2  # "u": not stated

    cold = np.zeros(n_users, dtype=bool)
    cold[rng.choice(n_users, int(round(cfg.cold_user_share * n_users)), replace=False)] = True
    # Arrival (fraction of the span): warm users join in the first 60%, cold ones after 80%.
    arrival = np.where(cold, rng.uniform(COLD_FRACTION + 0.001, 0.95, n_users),
                       rng.uniform(0.0, 0.6, n_users))

    # Activity: Zipf over a random rank, scaled by how long the user is around, plus a floor.
    weight = zipf_weights(rng.permutation(n_users), n_users, cfg.zipf_exponent) * (1.0 - arrival)
    floor = min(5, cfg.num_impressions // n_users)
    counts = floor + rng.multinomial(cfg.num_impressions - floor * n_users, weight / weight.sum())

    # Home domain by systematic sampling over activity: in a random user order, a user's home is
    # the domain whose slice of cumulative traffic holds the middle of the user's events. Single-
    # domain users then already carry each domain's configured share (a few heavy users drawn
    # into a small domain would otherwise swamp it). Every domain gets at least one home user.
    order = rng.permutation(n_users)
    middle = (np.cumsum(counts[order]) - 0.5 * counts[order]) / counts.sum()
    home = np.empty(n_users, dtype=np.int64)
    home[order] = np.minimum(np.searchsorted(np.cumsum(shares), middle, side="right"), n_dom - 1)
    for d in np.flatnonzero(np.bincount(home, minlength=n_dom) == 0):
        candidates = np.flatnonzero(np.bincount(home, minlength=n_dom)[home] > 1)
        home[candidates[np.argmin(counts[candidates])]] = d  # the lightest user of a shared home
    multi = np.zeros(n_users, dtype=bool)
    multi[rng.choice(n_users, int(round(cfg.user_overlap * n_users)), replace=False)] = True
    n_extra = np.where(multi, 1 + rng.binomial(max(n_dom - 2, 0), 0.3, n_users), 0)
    n_extra = np.minimum(n_extra, counts - 1)  # each active domain gets at least one event
    # Extra domains without replacement (Gumbel top-k), favouring small domains relative to
    # traffic (sqrt of share): grocery users are mostly main-app users too.
    keys = 0.5 * np.log(shares)[None, :] + rng.gumbel(size=(n_users, n_dom))
    keys[np.arange(n_users), home] = -np.inf
    ranked = np.argsort(-keys, axis=1, kind="stable")
    active_order = np.full((n_users, n_dom), -1, dtype=np.int64)  # home first, then extras
    active_order[:, 0] = home
    active_order[:, 1:] = np.where(np.arange(n_dom - 1)[None, :] < n_extra[:, None], ranked[:, :n_dom - 1], -1)
    width = len(str(n_users - 1))
    ids = np.array([f"u{i:0{max(6, width)}d}" for i in range(n_users)], dtype=object)
    return {"u": u, "bias": bias, "age": age, "gender": gender, "cold": cold, "arrival": arrival,
            "counts": counts, "home": home, "active_order": active_order, "ids": ids}


def make_user_events(rng, cfg: SyntheticConfig, users: dict, shares: np.ndarray):
    """Expand users into events: (user index, domain index, time as a fraction of the span)."""
    n_users, n_dom, n_imp = cfg.num_users, len(cfg.domains), cfg.num_impressions
    counts, active_order = users["counts"], users["active_order"]
    member = np.zeros((n_users, n_dom), dtype=bool)
    rows, cols = np.nonzero(active_order >= 0)
    member[rows, active_order[rows, cols]] = True
    n_active = member.sum(axis=1)
    boost = np.where(np.arange(n_dom)[None, :] == users["home"][:, None], _HOME_BOOST, 1.0)

    # Iterative proportional fitting of per-domain weights so the expected domain totals match
    # the configured shares, given the forced one-event-per-active-domain.
    forced = member.sum(axis=0).astype(np.float64)
    free = (counts - n_active).astype(np.float64)
    target = shares * n_imp
    alpha = shares.copy()
    for _ in range(500):
        w = member * boost * alpha[None, :]
        p = w / w.sum(axis=1, keepdims=True)
        total = forced + free @ p
        ratio = np.maximum(target - forced, 1e-9) / np.maximum(total - forced, 1e-9)
        alpha = alpha * ratio
        # Floor: an infeasible target (more forced events than the domain's share) must not
        # drive a weight to 0, which would leave a single-domain user with no domain at all.
        alpha = np.maximum(alpha / alpha.sum(), 1e-9)
        if np.max(np.abs(ratio - 1.0)) < 1e-7:
            break
    w = member * boost * alpha[None, :]
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)

    user_of = np.repeat(np.arange(n_users), counts)
    rank = np.arange(n_imp) - np.repeat(np.cumsum(counts) - counts, counts)
    forced_event = rank < n_active[user_of]
    dom = np.empty(n_imp, dtype=np.int64)
    dom[forced_event] = active_order[user_of[forced_event], rank[forced_event]]
    free_rows = np.flatnonzero(~forced_event)
    r = rng.random(free_rows.size)
    dom[free_rows] = np.minimum((r[:, None] > cum[user_of[free_rows]]).sum(axis=1), n_dom - 1)

    # Times: first event at arrival, the rest uniform over [arrival, end) thinned by the hour profile.
    arrival = users["arrival"][user_of]
    when = arrival.copy()
    span = cfg.days * 86400
    accept = _HOURLY / _HOURLY.max()
    todo = np.flatnonzero(rank > 0)
    for _ in range(200):
        if todo.size == 0:
            break
        f = arrival[todo] + (1.0 - arrival[todo]) * rng.random(todo.size)
        hour = ((cfg.start_timestamp + np.floor(f * span).astype(np.int64)) // 3600) % 24
        ok = rng.random(todo.size) < accept[hour]
        when[todo[ok]] = f[ok]
        todo = todo[~ok]
    if todo.size:  # practically never: accept the rest without thinning
        when[todo] = arrival[todo] + (1.0 - arrival[todo]) * rng.random(todo.size)
    return user_of, dom, np.minimum(when, np.nextafter(1.0, 0.0))
