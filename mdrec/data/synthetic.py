"""A seeded synthetic multi-business-line click log whose click model is known.

A company runs several business lines ("domains": main app, mini-program, live stream, grocery...)
that share user accounts and partly share catalogues. :func:`generate` simulates one impression
log for all of them. Because the true click probability of every impression is known, the log can
state the best achievable (Bayes) AUC per domain, which tells a benchmark how much headroom a model
has left.

Generative story (all randomness from ``numpy.random.default_rng(config.seed)``):

Users
    Shared latent factor ``u`` (``latent_dim`` components, each N(0, 1/sqrt(latent_dim)) so that a
    dot product of two factors has variance 1), a bias ``user_bias`` ~ N(0, 0.35^2), a home domain
    (systematic sampling over activity, so home traffic follows the configured shares) and, for
    exactly ``user_overlap`` of the users, 1+ further domains (small domains are picked more often
    than their traffic share: their users are mostly users of the big app too). A user's events
    are split over their domains with the home domain weighted 4x, per-domain weights fitted so
    domain totals match ``domain_shares``. Activity is Zipf-Mandelbrot: weight
    (rank + 1 + num_users/50)^-zipf_exponent times the length of the user's active window, plus a
    floor of min(5, impressions/users) events per user. Every user's first event is at their arrival time: uniform in the first 60% of the
    time span, or in [80%, 95%] for the ``cold_user_share`` cold users. Inside a user's window,
    event times follow a day/night (UTC hour) profile. ``age_group`` and ``gender`` are noisy
    functions of ``u``, so they help with cold users.
Items
    Shared latent factor ``v``, bias ``item_bias`` = 0.25 * popularity + N(0, 0.35^2). Content is
    generated FROM ``v`` so that it generalises to cold items: ``category`` = argmax(C v + noise);
    ``tags`` = the 1-4 best of (T v + noise); ``title`` = 3-8 words drawn from word groups tied to
    the category, to the sign of the item's strongest latent directions, or filler words;
    ``price`` = lognormal(mu_category + 0.3 p.v, 0.35); ``item_emb`` = 8 floats, a noisy linear
    projection P v + 0.5 Q[category] + N(0, 0.25^2).
Catalogues
    Each domain has a catalogue sized like its traffic (at least min(50, num_items / (2 domains))
    items). About ``catalogue_overlap`` of each catalogue is shared: shared items are in exactly
    two catalogues (a domain larger than all others together cannot reach the share). An item has
    one id in every catalogue it is in. A domain's impressions only show its own catalogue, with
    Zipf-Mandelbrot popularity inside the catalogue (shared items are popular in both domains,
    with noise). ``cold_item_share`` of the items are introduced at a time in [80%, 95%] of the
    span and are never shown before that.
Clicks
    Per domain d, a user shift ``s_{u,d}`` and an item shift ``t_{i,d}`` (same distribution as
    ``u``/``v``), and::

        logit = b_d + scale_d * (u + shift*s_{u,d}).(v + shift*t_{i,d}) / (1 + shift^2)
                    + user_bias + item_bias + device_effect[d, device]
        click ~ Bernoulli(sigmoid(logit))

    The division by 1 + shift^2 keeps the interaction's variance independent of ``domain_shift``;
    the correlation of a user's factors between two domains is 1 / (1 + shift^2). ``scale_d`` is
    ``1.0`` times a per-domain factor in [0.85, 1.15]; ``b_d`` is solved so that the domain's mean
    click probability hits a target CTR between 4% and 12% (targets differ between domains). With
    the defaults each domain's Bayes AUC is about 0.76-0.82. ``device`` is mostly the user's
    phone (ios/android) with a per-domain share of "web".

Exposure (sequential taste)
    A user's first impression, and every impression with probability 1 - ``related_share``, shows
    a popular item of the line (the popularity feed above). Otherwise it comes from the "related to
    your recent clicks" shelf: an anchor among the user's last ``recent_clicks`` clicks in any line
    (the newest twice as likely as the one before, and so on), then one of the anchor's
    ``related_items`` related items in the impression's line, uniformly. Related items are the
    nearest by an item "sequel" factor ``w`` (``latent_dim`` components, independent of ``v``), so
    which item comes next is learnable from the order of a user's clicks (and across lines: a
    big-line click fills a small line's shelf), not from the taste factors. A related item not yet
    introduced falls back to the popularity feed. The click on a shown item follows the click model
    above, which does not read the history: the true probability stays the ceiling of a CTR model.
    ``b_d`` is solved on the popularity feed's items; the shelf moves a line's realised CTR a little
    (``meta.domains[d].ctr``).

The true probability is NOT a column of the frame; it is kept in ``SyntheticLog.true_probability``
for tests and benchmarks.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json, atomic_write_table

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_SHARES = np.array([0.18, 0.30, 0.24, 0.15, 0.09, 0.04])
DEVICES = ("ios", "android", "web")
_DEVICE_BASE_EFFECT = np.array([0.15, 0.0, -0.25])  # ios users click a little more, web less
COLD_FRACTION = 0.8  # cold users/items only appear after this fraction of the time span
_EMB_DIM = 8
_BASE_SCALE = 1.0  # interaction strength; tuned so per-domain Bayes AUC lands near 0.76-0.82
_HOME_BOOST = 4.0  # a user's home domain gets this many times the weight of another domain of theirs
# Relative activity per UTC hour: quiet at night, peaks at lunch and in the evening.
_HOURLY = np.array([0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.70, 0.72, 0.80,
                    0.90, 0.80, 0.70, 0.70, 0.72, 0.78, 0.85, 0.95, 1.00, 0.95, 0.75, 0.45])
COLUMNS = ("user_id", "item_id", "domain", "timestamp", "click", "age_group", "gender", "device",
           "category", "tags", "title", "price", "item_emb")


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic log; every combination that passes validation generates a log."""

    seed: int = 0
    num_users: int = 6000
    num_items: int = 3000
    num_impressions: int = 200_000
    domains: tuple[str, ...] = ("main", "mini", "live", "grocery")
    domain_shares: tuple[float, ...] = (0.55, 0.30, 0.12, 0.03)  # traffic share per domain
    user_overlap: float = 0.6        # share of users active in more than one domain
    catalogue_overlap: float = 0.3   # share of a domain's catalogue also in another domain's
    latent_dim: int = 8
    domain_shift: float = 0.5        # size of the per-domain factor shift relative to the shared one
    zipf_exponent: float = 1.1       # item popularity and user activity
    cold_user_share: float = 0.05    # users whose first activity is in the last 20% of time
    cold_item_share: float = 0.05    # items introduced in the last 20% of time
    num_categories: int = 20
    num_tags: int = 60
    vocab_words: int = 400
    start_timestamp: int = 1_700_000_000
    days: int = 30
    related_share: float = 0.7       # impressions from the "related to your recent clicks" shelf
    related_items: int = 10          # related items per anchor item and line
    recent_clicks: int = 2           # the shelf's anchors: the user's last clicks

    def __post_init__(self):
        # Accept lists (e.g. from JSON) but store tuples so the config stays hashable.
        object.__setattr__(self, "domains", _as_tuple("domains", self.domains))
        object.__setattr__(self, "domain_shares", _as_tuple("domain_shares", self.domain_shares))
        for name in ("seed", "start_timestamp"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("num_users", "num_items", "num_impressions", "latent_dim", "days"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("num_categories", self.num_categories, minimum=2)
        _check_int("num_tags", self.num_tags, minimum=4, why="items carry up to 4 distinct tags")
        if len(self.domains) < 2:
            _bad("domains", self.domains, "needs at least 2 domains",
                 "list two or more business lines, e.g. ('main', 'mini')")
        for name in self.domains:
            if not isinstance(name, str) or not name.strip():
                _bad("domains", self.domains, "names must be non-empty strings", "e.g. ('main', 'mini')")
        if len(set(self.domains)) != len(self.domains):
            _bad("domains", self.domains, "names must be unique", "rename the repeated domain")
        if len(self.domain_shares) != len(self.domains):
            _bad("domain_shares", self.domain_shares,
                 f"has {len(self.domain_shares)} values for {len(self.domains)} domains",
                 "give one traffic share per domain, in the same order")
        for share in self.domain_shares:
            if not _is_real(share) or not share > 0:
                _bad("domain_shares", self.domain_shares, "values must be numbers > 0",
                     "every domain needs some traffic")
        total = float(sum(self.domain_shares))
        if abs(total - 1.0) > 1e-6:
            _bad("domain_shares", self.domain_shares, f"must sum to 1 (they sum to {total:.6g})",
                 "divide each share by their sum")
        for name in ("user_overlap", "catalogue_overlap"):
            _check_real(name, getattr(self, name), 0.0, 1.0)
        for name in ("cold_user_share", "cold_item_share"):
            _check_real(name, getattr(self, name), 0.0, 0.5)
        _check_real("domain_shift", self.domain_shift, 0.0, 10.0)
        _check_real("related_share", self.related_share, 0.0, 1.0)
        _check_int("related_items", self.related_items, minimum=1)
        _check_int("recent_clicks", self.recent_clicks, minimum=1)
        _check_real("zipf_exponent", self.zipf_exponent, 0.0, 5.0)
        if self.num_impressions < 2 * self.num_users:
            _bad("num_impressions", self.num_impressions,
                 f"must be at least 2 x num_users = {2 * self.num_users}",
                 "every user needs a few events; raise num_impressions or lower num_users")
        min_items = 5 * len(self.domains)
        if self.num_items < min_items:
            _bad("num_items", self.num_items, f"must be at least 5 per domain = {min_items}",
                 "raise num_items")
        min_vocab = self.num_categories + 2 * self.latent_dim + 3
        if not self.vocab_words >= min_vocab:
            _bad("vocab_words", self.vocab_words,
                 f"must be at least num_categories + 2 x latent_dim + 3 = {min_vocab}",
                 "titles use one word group per category and per latent direction, plus filler words")
        if self.vocab_words > 70 ** 2 + 70 ** 3:
            _bad("vocab_words", self.vocab_words, f"must be at most {70 ** 2 + 70 ** 3}", "lower it")

    def to_dict(self) -> dict:
        """JSON-ready copy (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["domains"] = list(self.domains)
        out["domain_shares"] = [float(x) for x in self.domain_shares]
        return out


# Named configurations. "transfer": one big line and small lines where most users have a handful
# of events (the pretrain-and-transfer scenario, sized for the demo: the big line's median user
# has 3 clicks). "transfer-long": the benchmark's version, where the big line really knows its
# users (median 11 clicks, flatter activity) and each small line has 5% of the traffic, so a
# target test split holds about 5,000 rows (bench/transfer.py thins the target's training rows).
PRESETS: dict[str, dict] = {
    "default": {},
    "transfer": {"num_users": 3000, "num_items": 3000, "num_impressions": 500_000,
                 "domain_shares": (0.9, 0.05, 0.03, 0.02), "user_overlap": 0.9},
    "transfer-long": {"num_users": 2000, "num_items": 3000, "num_impressions": 1_000_000,
                      "domain_shares": (0.85, 0.05, 0.05, 0.05), "user_overlap": 0.9, "zipf_exponent": 0.8},
}


def preset(name: str, **overrides) -> SyntheticConfig:
    if name not in PRESETS:
        raise MdrecError(f"unknown synthetic preset '{name}'", hint=f"use one of: {', '.join(PRESETS)}")
    return SyntheticConfig(**{**PRESETS[name], **overrides})


def _as_tuple(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        _bad(name, value, "must be a sequence", "use a tuple, e.g. ('main', 'mini')")
    return tuple(value)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _bad(name, value, problem, hint):
    raise MdrecError(f"SyntheticConfig.{name} {problem} (got {value!r})", hint=hint)


def _check_int(name, value, *, minimum, why=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _bad(name, value, "must be an integer", f"use a whole number >= {minimum}")
    if value < minimum:
        _bad(name, value, f"must be >= {minimum}", why or f"use a whole number >= {minimum}")


def _check_real(name, value, low, high):
    if not _is_real(value) or not low <= float(value) <= high:
        _bad(name, value, f"must be a number between {low:g} and {high:g}",
             f"pick a value in [{low:g}, {high:g}]")


@dataclass(eq=False)
class SyntheticLog:
    """A generated log.

    ``frame``: one row per impression, sorted by timestamp, RangeIndex, columns :data:`COLUMNS`.
    ``meta``: JSON-serialisable summary (config, per-domain rows, CTR, Bayes AUC, overlaps, cold
    counts, click model). The remaining fields are ground truth for tests and benchmarks and are
    never written as model inputs: ``true_probability`` (float64, aligned with ``frame`` rows),
    ``catalogues`` (domain -> sorted item ids), ``cold_users`` / ``cold_items`` (ids of the users
    and items that only exist in the last 20% of time).
    """

    frame: pd.DataFrame
    meta: dict
    true_probability: np.ndarray | None = field(default=None, repr=False)
    catalogues: dict = field(default_factory=dict, repr=False)
    cold_users: tuple = field(default=(), repr=False)
    cold_items: tuple = field(default=(), repr=False)

    def split(self, valid_fraction: float = 0.1, test_fraction: float = 0.1
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Global time split: oldest rows -> train, then valid, newest -> test.

        The cuts are timestamps, so rows sharing a second never straddle two parts
        (max train ts < min valid ts <= max valid ts < min test ts); part sizes are therefore
        close to, not exactly, the requested fractions. The parts keep the frame's index, so
        ``log.true_probability[part.index]`` lines up.
        """
        return time_split(self.frame, valid_fraction, test_fraction)


def time_split(frame: pd.DataFrame, valid_fraction: float = 0.1, test_fraction: float = 0.1
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a timestamp-sorted frame at two timestamps (see :meth:`SyntheticLog.split`)."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not _is_real(value) or not 0.0 <= float(value) < 1.0:
            raise MdrecError(f"{name} must be a number in [0, 1) (got {value!r})")
    if valid_fraction + test_fraction >= 1.0:
        raise MdrecError(f"valid_fraction + test_fraction must be < 1 (got "
                         f"{valid_fraction + test_fraction:g})", hint="leave rows for training")
    ts = frame["timestamp"].to_numpy()
    if len(ts) and np.any(np.diff(ts) < 0):
        raise MdrecError("frame is not sorted by timestamp", column="timestamp",
                         hint="sort it with frame.sort_values('timestamp', kind='stable')")
    n = len(ts)

    def cut(fraction_before: float) -> int:
        pos = int(round(n * fraction_before))
        if pos >= n:
            return n
        return int(np.searchsorted(ts, ts[pos], side="left"))  # move back to the first row of that second

    a = cut(1.0 - valid_fraction - test_fraction)
    b = max(a, cut(1.0 - test_fraction))
    return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]


# --------------------------------------------------------------------------------------------
# Metrics of the known click model


def bayes_auc(probabilities, labels) -> float:
    """AUC of the true click probabilities against the drawn labels (what a perfect model gets)."""
    from sklearn.metrics import roc_auc_score  # imported here: sklearn is slow to import

    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if p.shape != y.shape:
        raise MdrecError(f"probabilities ({p.size}) and labels ({y.size}) differ in length")
    if y.size == 0 or np.unique(y).size < 2:
        raise MdrecError("AUC needs both clicks and non-clicks among the labels",
                         hint="use more impressions or a domain with clicks")
    return float(roc_auc_score(y, p))


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


def _group_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float | None:
    """Impression-weighted mean of per-group AUC over groups with both classes (GAUC)."""
    df = pd.DataFrame({"g": groups, "s": scores, "y": labels.astype(np.int64)})
    df["r"] = df.groupby("g")["s"].rank(method="average")
    df["ry"] = df["r"] * df["y"]
    agg = df.groupby("g").agg(n=("y", "size"), pos=("y", "sum"), rank_pos=("ry", "sum"))
    agg = agg[(agg["pos"] > 0) & (agg["pos"] < agg["n"])]
    if agg.empty:
        return None
    neg = agg["n"] - agg["pos"]
    auc = (agg["rank_pos"] - agg["pos"] * (agg["pos"] + 1) / 2) / (agg["pos"] * neg)
    return float(np.average(auc, weights=agg["n"]))


# --------------------------------------------------------------------------------------------
# Generation


def generate(config: SyntheticConfig | None = None) -> SyntheticLog:
    """Simulate the log described in the module docstring. Same config -> identical frame."""
    cfg = config if config is not None else SyntheticConfig()
    if not isinstance(cfg, SyntheticConfig):
        raise MdrecError(f"generate() needs a SyntheticConfig (got {type(cfg).__name__})")
    rng = np.random.default_rng(cfg.seed)
    n_dom, n_users, n_items, k = len(cfg.domains), cfg.num_users, cfg.num_items, cfg.latent_dim
    shares = np.asarray(cfg.domain_shares, dtype=np.float64)
    span = cfg.days * 86400
    comp_std = k ** -0.25  # factor dot products then have variance 1

    users = _make_users(rng, cfg, comp_std)
    user_of, dom, when = _make_user_events(rng, cfg, users, shares)
    items = _make_items(rng, cfg, comp_std, shares)
    item_of = _sample_items(rng, cfg, items, dom, when)
    device = _sample_devices(rng, n_dom, users, user_of, dom)

    # Click model: per-domain shifts and biases; b_d solved on the popularity feed's items.
    target_ctr = rng.permutation(np.linspace(0.04, 0.12, n_dom))
    domain_scale = _BASE_SCALE * rng.uniform(0.85, 1.15, n_dom)
    device_effect = _DEVICE_BASE_EFFECT[None, :] + rng.normal(0.0, 0.08, (n_dom, len(DEVICES)))
    shift = cfg.domain_shift
    user_shift = np.stack([rng.normal(0.0, comp_std, (n_users, k)) for _ in range(n_dom)])
    item_shift = np.stack([rng.normal(0.0, comp_std, (n_items, k)) for _ in range(n_dom)])

    def score(uu, ii, dd, dev):  # the logit without b_d
        inter = np.einsum("ij,ij->i", users["u"][uu] + shift * user_shift[dd, uu],
                          items["v"][ii] + shift * item_shift[dd, ii])
        return (domain_scale[dd] * inter / (1.0 + shift ** 2) + users["bias"][uu] + items["bias"][ii]
                + device_effect[dd, dev])

    domain_bias = np.zeros(n_dom)
    for d in range(n_dom):
        rows = np.flatnonzero(dom == d)
        domain_bias[d] = _solve_bias(score(user_of[rows], item_of[rows], dom[rows], device[rows]), target_ctr[d])
    related = _related_items(rng, cfg, items)
    item_of, shelf, logit, click = _expose_and_click(rng, cfg, items, related, user_of, dom, when, item_of,
                                                     lambda uu, ii, dd, dev: score(uu, ii, dd, dev) + domain_bias[dd],
                                                     device)
    prob = 1.0 / (1.0 + np.exp(-logit))

    # Timestamps: whole seconds; a stable sort keeps the (deterministic) generation order on ties.
    timestamp = cfg.start_timestamp + np.floor(when * span).astype(np.int64)
    order = np.argsort(timestamp, kind="stable")
    user_of, item_of, dom, device = user_of[order], item_of[order], dom[order], device[order]
    timestamp, click, prob, shelf = timestamp[order], click[order], prob[order], shelf[order]

    def take(labels, index):
        return pd.array(np.asarray(labels, dtype=object), dtype="str").take(index)

    frame = pd.DataFrame({
        "user_id": take(users["ids"], user_of),
        "item_id": take(items["ids"], item_of),
        "domain": take(cfg.domains, dom),
        "timestamp": timestamp,
        "click": click,
        "age_group": take(AGE_GROUPS, users["age"][user_of]),
        "gender": take(("f", "m", "u"), users["gender"][user_of]),
        "device": take(DEVICES, device),
        "category": take(items["category_names"], items["category"][item_of]),
        "tags": take(items["tags"], item_of),
        "title": take(items["title"], item_of),
        "price": items["price"][item_of],
        "item_emb": take(items["emb"], item_of),
    })

    click_model = {
        "formula": ("logit = b_d + scale_d * (u + shift*s_ud).(v + shift*t_id) / (1 + shift^2) "
                    "+ user_bias + item_bias + device_effect[d, device]; click ~ Bernoulli(sigmoid(logit))"),
        "description": (
            "u, v: shared user/item factors; s_ud, t_id: per-domain shifts, all with components "
            f"N(0, 1/sqrt({k})). Item content (category, tags, title, price, item_emb) is generated "
            "from v only. user_bias ~ N(0, 0.35^2); item_bias = 0.25*popularity + N(0, 0.35^2). "
            "b_d is solved so the domain's mean click probability equals target_ctr[d]. Exposure "
            "is popularity-driven and independent of the user's taste."),
        "shift": float(shift),
        "domain_scale": {name: float(domain_scale[d]) for d, name in enumerate(cfg.domains)},
        "domain_bias": {name: float(domain_bias[d]) for d, name in enumerate(cfg.domains)},
        "target_ctr": {name: float(target_ctr[d]) for d, name in enumerate(cfg.domains)},
        "device_effect": {name: {dev: float(device_effect[d, j]) for j, dev in enumerate(DEVICES)}
                          for d, name in enumerate(cfg.domains)},
        "user_bias_std": 0.35,
        "item_bias": "0.25 * popularity_z + N(0, 0.35^2)",
        "factor_correlation_between_domains": float(1.0 / (1.0 + shift ** 2)),
        "exposure": {
            "rule": ("a user's first impression, and each later one with probability 1 - related_share, "
                     "shows a popular item of the line; otherwise an anchor is drawn among the user's last "
                     "recent_clicks clicks in any line (weights 2^-j, j = 0 the newest) and one of its "
                     "related_items related items in the impression's line is shown, uniformly; related = "
                     "nearest by cosine of an item sequel factor w ~ N(0, 1) independent of v; a related item "
                     "not yet introduced falls back to the popularity feed. The click model does not read "
                     "the history."),
            "related_share": float(cfg.related_share), "related_items": int(cfg.related_items),
            "recent_clicks": int(cfg.recent_clicks),
            "shelf_share_of_impressions": float(shelf.mean()),
            "shelf_share_of_clicks": float(shelf[click == 1].mean()) if click.any() else None,
        },
    }
    catalogues = {name: tuple(items["ids"][items["catalogues"][d]]) for d, name in enumerate(cfg.domains)}
    cold_users = tuple(users["ids"][users["cold"]])
    cold_items = tuple(items["ids"][items["intro"] > 0])
    meta = _describe(cfg, frame, prob, user_of, item_of, dom, items, users, click_model)
    return SyntheticLog(frame=frame, meta=meta, true_probability=prob, catalogues=catalogues,
                        cold_users=cold_users, cold_items=cold_items)


def _zipf_weights(ranks: np.ndarray, size: int, exponent: float) -> np.ndarray:
    """Zipf-Mandelbrot weights (rank + 1 + size/50)^-exponent: a heavy head without one
    element taking a large slice of all traffic."""
    return (ranks + 1.0 + size / 50.0) ** -exponent


def _make_users(rng, cfg: SyntheticConfig, comp_std: float) -> dict:
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
    weight = _zipf_weights(rng.permutation(n_users), n_users, cfg.zipf_exponent) * (1.0 - arrival)
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


def _make_user_events(rng, cfg: SyntheticConfig, users: dict, shares: np.ndarray):
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


def _make_items(rng, cfg: SyntheticConfig, comp_std: float, shares: np.ndarray) -> dict:
    n_items, k, n_dom = cfg.num_items, cfg.latent_dim, len(cfg.domains)
    o = cfg.catalogue_overlap
    v = rng.normal(0.0, comp_std, (n_items, k))
    popularity = rng.normal(size=n_items)
    bias = 0.25 * popularity + rng.normal(0.0, 0.35, n_items)

    # --- catalogues: memberships = items + shared items (each shared item is in two catalogues)
    min_cat = min(50, max(1, n_items // (2 * n_dom)))
    memberships = n_items / (1.0 - o / 2.0)
    planned = min_cat + np.floor((memberships - n_dom * min_cat) * shares)
    stubs = np.repeat(np.arange(n_dom), np.round(o * planned).astype(np.int64))
    pairs = []
    for _ in range(20):  # random stub matching; a stub paired with its own domain tries again
        stubs = rng.permutation(stubs)
        half = stubs.size // 2
        a, b = stubs[:half], stubs[half:2 * half]
        ok = a != b
        pairs.append(np.stack([a[ok], b[ok]], axis=1))
        stubs = np.concatenate([a[~ok], b[~ok]])
        if stubs.size < 2 or np.unique(stubs).size < 2:
            break
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    n_shared = len(pairs)
    shared_per_dom = np.bincount(pairs.ravel(), minlength=n_dom)
    exclusive = _largest_remainder(n_items - n_shared, np.maximum(planned - shared_per_dom, 0.0) + 1e-9)
    slot = rng.permutation(n_items)  # ids do not encode the domain
    member = np.zeros((n_items, n_dom), dtype=bool)
    member[slot[:n_shared], pairs[:, 0]] = True
    member[slot[:n_shared], pairs[:, 1]] = True
    member[slot[n_shared:], np.repeat(np.arange(n_dom), exclusive)] = True
    catalogues = [np.flatnonzero(member[:, d]) for d in range(n_dom)]

    # --- cold items: introduced at a time in [80%, 95%]; every domain keeps a warm item.
    intro = np.zeros(n_items)
    cold = rng.choice(n_items, int(round(cfg.cold_item_share * n_items)), replace=False)
    intro[cold] = rng.uniform(COLD_FRACTION + 0.001, 0.95, cold.size)
    for cat in catalogues:
        if np.all(intro[cat] > 0):
            intro[cat[0]] = 0.0

    # --- popularity inside each catalogue: shared items correlate across domains via `popularity`.
    weights = []
    for cat in catalogues:
        score = popularity[cat] + 0.5 * rng.normal(size=cat.size)
        rank = np.empty(cat.size)
        rank[np.argsort(-score, kind="stable")] = np.arange(cat.size)
        weights.append(_zipf_weights(rank, cat.size, cfg.zipf_exponent))

    # --- content, generated from v so it carries over to cold items
    n_cat, n_tags = cfg.num_categories, cfg.num_tags
    category = np.argmax(v @ rng.normal(size=(k, n_cat)) + rng.normal(size=(n_items, n_cat)), axis=1)
    tag_score = v @ rng.normal(size=(k, n_tags)) + 0.7 * rng.normal(size=(n_items, n_tags))
    top_tags = np.argsort(-tag_score, axis=1, kind="stable")[:, :4]
    n_item_tags = rng.choice(4, n_items, p=[0.3, 0.35, 0.2, 0.15]) + 1
    tag_w, cat_w = max(2, len(str(n_tags - 1))), max(2, len(str(n_cat - 1)))
    tags = np.array(["|".join(f"t{t:0{tag_w}d}" for t in sorted(row[:m]))
                     for row, m in zip(top_tags.tolist(), n_item_tags.tolist())], dtype=object)
    category_names = [f"c{c:0{cat_w}d}" for c in range(n_cat)]
    title = _make_titles(rng, cfg, v, category)
    mu_cat = rng.uniform(1.5, 5.0, n_cat)
    price_dir = rng.normal(size=k)
    log_price = mu_cat[category] + 0.3 * (v @ (price_dir / np.linalg.norm(price_dir))) \
        + rng.normal(0.0, 0.35, n_items)
    price = np.maximum(np.round(np.exp(log_price), 2), 0.01)
    emb = v @ (rng.normal(size=(k, _EMB_DIM)) / math.sqrt(k) / comp_std) \
        + 0.5 * rng.normal(size=(n_cat, _EMB_DIM))[category] + rng.normal(0.0, 0.25, (n_items, _EMB_DIM))
    emb = np.round(emb, 4) + 0.0  # + 0.0 turns -0.0 into 0.0 so no "-0.0000" appears
    emb_text = np.array([" ".join(f"{x:.4f}" for x in row) for row in emb.tolist()], dtype=object)
    width = len(str(n_items - 1))
    ids = np.array([f"i{i:0{max(6, width)}d}" for i in range(n_items)], dtype=object)
    return {"v": v, "bias": bias, "member": member, "catalogues": catalogues, "weights": weights,
            "intro": intro, "category": category, "category_names": category_names, "tags": tags,
            "title": title, "price": price, "emb": emb_text, "ids": ids}


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum exactly to ``total``."""
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out


def _make_vocabulary(rng, size: int) -> list[str]:
    """``size`` distinct pronounceable lowercase words of 2 or 3 consonant-vowel syllables."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70
    n_syl = len(syllables)
    words = []
    for p in rng.choice(n_syl ** 2 + n_syl ** 3, size=size, replace=False).tolist():
        if p < n_syl ** 2:
            words.append(syllables[p // n_syl] + syllables[p % n_syl])
        else:
            p -= n_syl ** 2
            words.append(syllables[p // n_syl ** 2] + syllables[(p // n_syl) % n_syl] + syllables[p % n_syl])
    return words


def _make_titles(rng, cfg: SyntheticConfig, v: np.ndarray, category: np.ndarray) -> np.ndarray:
    """3-8 word titles mixing category words, words of the item's strong latent directions
    (by sign) and filler, so the text carries signal about both category and v."""
    n_items, k, n_cat, size = len(v), cfg.latent_dim, cfg.num_categories, cfg.vocab_words
    vocab = _make_vocabulary(rng, size)
    # About 35% direction words, 40% category words, the rest (at least 3) filler.
    per_dir = max(1, min(int(0.35 * size) // (2 * k), (size - n_cat - 3) // (2 * k)))
    per_cat = max(1, min(int(0.4 * size) // n_cat, (size - 2 * k * per_dir - 3) // n_cat))
    dir_base = n_cat * per_cat
    filler_base = dir_base + 2 * k * per_dir
    n_filler = size - filler_base
    slots = 16  # candidate words per item; duplicates are dropped, then the first m kept
    kind = rng.choice(3, (n_items, slots), p=[0.4, 0.35, 0.25])
    cat_word = category[:, None] * per_cat + rng.integers(0, per_cat, (n_items, slots))
    strength = np.cumsum(v ** 2, axis=1)
    strength /= strength[:, -1:]
    dim = np.minimum((rng.random((n_items, slots))[:, :, None] > strength[:, None, :]).sum(-1), k - 1)
    sign = (np.take_along_axis(v, dim, axis=1) > 0).astype(np.int64)
    dir_word = dir_base + (2 * dim + sign) * per_dir + rng.integers(0, per_dir, (n_items, slots))
    filler_word = filler_base + rng.integers(0, n_filler, (n_items, slots))
    word = np.where(kind == 0, cat_word, np.where(kind == 1, dir_word, filler_word))
    length = rng.integers(3, 9, n_items)
    titles = []
    for row, m in zip(word.tolist(), length.tolist()):
        chosen = list(dict.fromkeys(row))[:m]
        extra = filler_base
        while len(chosen) < 3:  # only with tiny vocabularies
            if extra not in chosen:
                chosen.append(extra)
            extra += 1
        titles.append(" ".join(vocab[w] for w in chosen))
    return np.array(titles, dtype=object)


def _sample_items(rng, cfg: SyntheticConfig, items: dict, dom: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Item per impression from the domain's catalogue by popularity; an item is never shown
    before its introduction time (rejection sampling, then warm items only as a fallback)."""
    item_of = np.empty(dom.size, dtype=np.int64)
    intro = items["intro"]
    for d, (cat, weight) in enumerate(zip(items["catalogues"], items["weights"])):
        cum = np.cumsum(weight)
        cum /= cum[-1]
        todo = np.flatnonzero(dom == d)
        for _ in range(100):
            if todo.size == 0:
                break
            pick = cat[np.minimum(np.searchsorted(cum, rng.random(todo.size), side="right"), cat.size - 1)]
            ok = intro[pick] <= when[todo]
            item_of[todo[ok]] = pick[ok]
            todo = todo[~ok]
        if todo.size:
            warm = cat[intro[cat] == 0]
            wcum = np.cumsum(weight[intro[cat] == 0])
            wcum /= wcum[-1]
            item_of[todo] = warm[np.minimum(np.searchsorted(wcum, rng.random(todo.size), side="right"),
                                            warm.size - 1)]
    return item_of


def _related_items(rng, cfg: SyntheticConfig, items: dict) -> np.ndarray:
    """related[d, j]: the ``related_items`` items of line d's catalogue nearest to item j by the
    cosine of the sequel factor w (j itself excluded; padded with the nearest when the catalogue is
    small), int64 [domains, items, related_items]."""
    n_items, n_dom, size = cfg.num_items, len(cfg.domains), cfg.related_items
    w = rng.normal(size=(n_items, cfg.latent_dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    related = np.empty((n_dom, n_items, size), dtype=np.int64)
    for d, cat in enumerate(items["catalogues"]):
        sims = w @ w[cat].T  # [items, catalogue]
        sims[cat, np.arange(cat.size)] = -np.inf  # never an item's own sequel
        take = min(size, max(cat.size - 1, 1))
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable"), 1)
        related[d] = cat[np.resize(top, (n_items, size)) if take < size else top]
    return related


def _expose_and_click(rng, cfg: SyntheticConfig, items: dict, related: np.ndarray, user_of: np.ndarray,
                      dom: np.ndarray, when: np.ndarray, feed_item: np.ndarray, logit_of, device: np.ndarray):
    """Walk every user's events in time order (all users at once, one event rank per step): pick
    the shown item (the popularity feed's ``feed_item`` or the shelf, see the module doc), its logit
    and the click. Returns (item, from_shelf, logit, click) per event, in the input order."""
    n = user_of.size
    order = np.lexsort((np.arange(n), when, user_of))  # by user, then time (ties: generation order)
    starts = np.flatnonzero(np.r_[True, user_of[order][1:] != user_of[order][:-1]])
    counts = np.diff(np.r_[starts, n])
    recent = np.full((cfg.num_users, cfg.recent_clicks), -1, dtype=np.int64)  # newest first
    weights = 0.5 ** np.arange(cfg.recent_clicks)
    item = feed_item.copy()
    shelf = np.zeros(n, dtype=bool)
    logit = np.empty(n)
    click = np.zeros(n, dtype=np.int64)
    intro = items["intro"]
    for rank in range(int(counts.max()) if n else 0):
        rows = order[starts[counts > rank] + rank]
        uu, dd = user_of[rows], dom[rows]
        known = recent[uu] >= 0
        wants = known[:, 0] & (rng.random(rows.size) < cfg.related_share)
        slot_weights = np.where(known, weights[None, :], 0.0)
        cum = np.cumsum(slot_weights, axis=1)
        slot = (rng.random(rows.size)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
        anchor = recent[uu, np.minimum(slot, cfg.recent_clicks - 1)]
        pick = related[dd, np.maximum(anchor, 0), rng.integers(0, cfg.related_items, rows.size)]
        use = wants & (intro[pick] <= when[rows])
        item[rows[use]] = pick[use]
        shelf[rows] = use
        logit[rows] = logit_of(uu, item[rows], dd, device[rows])
        clicked = rng.random(rows.size) < 1.0 / (1.0 + np.exp(-logit[rows]))
        click[rows] = clicked
        hit = uu[clicked]
        recent[hit, 1:] = recent[hit, :-1]
        recent[hit, 0] = item[rows[clicked]]
    return item, shelf, logit, click


def _sample_devices(rng, n_dom: int, users: dict, user_of: np.ndarray, dom: np.ndarray) -> np.ndarray:
    """Mostly the user's own phone; each domain has its own share of web traffic."""
    n_users = len(users["counts"])
    phone = (rng.random(n_users) >= 0.45).astype(np.int64)  # 0 ios, 1 android
    web_share = rng.uniform(0.02, 0.30, n_dom)
    n = user_of.size
    own = phone[user_of]
    device = np.where(rng.random(n) < 0.9, own, 1 - own)
    device[rng.random(n) < web_share[dom]] = 2
    return device


def _solve_bias(x: np.ndarray, target: float) -> float:
    """b such that mean(sigmoid(b + x)) == target (bisection: the mean is increasing in b)."""
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(mid + x)))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _describe(cfg, frame, prob, user_of, item_of, dom, items, users, click_model) -> dict:
    """The JSON-ready meta: what was generated and how well the true model can do."""
    names = cfg.domains
    click = frame["click"].to_numpy()
    n_dom = len(names)

    def safe(fn, *args):
        try:
            return fn(*args)
        except MdrecError:
            return None  # e.g. a tiny domain without clicks

    per_domain = {}
    pair_users = np.zeros((n_dom, n_dom), dtype=np.int64)
    user_dom = np.zeros((cfg.num_users, n_dom), dtype=bool)
    user_dom[user_of, dom] = True
    seen = user_dom.any(axis=1)
    multi = user_dom.sum(axis=1) > 1
    for a in range(n_dom):
        for b in range(n_dom):
            pair_users[a, b] = int(np.sum(user_dom[:, a] & user_dom[:, b]))
    member = items["member"]
    shown = np.zeros_like(member)
    shown[item_of, dom] = True
    for d, name in enumerate(names):
        rows = dom == d
        cat = items["catalogues"][d]
        others = np.delete(member, d, axis=1).any(axis=1)
        per_domain[name] = {
            "rows": int(rows.sum()),
            "share": float(rows.mean()),
            "ctr": float(click[rows].mean()) if rows.any() else None,
            "mean_true_probability": float(prob[rows].mean()) if rows.any() else None,
            "bayes_auc": safe(bayes_auc, prob[rows], click[rows]),
            "expected_bayes_auc": safe(expected_bayes_auc, prob[rows]) if rows.sum() > 1 else None,
            "bayes_gauc": _group_auc(prob[rows], click[rows], user_of[rows]) if rows.any() else None,
            "users": int(user_dom[:, d].sum()),
            "users_also_in_other_domains": float(np.mean(multi[user_dom[:, d]])) if user_dom[:, d].any() else None,
            "catalogue_size": int(cat.size),
            "catalogue_overlap": float(np.mean(others[cat])) if cat.size else None,
            "items_shown": int(shown[:, d].sum()),
        }
    ts = frame["timestamp"].to_numpy()
    cold_cut = cfg.start_timestamp + COLD_FRACTION * cfg.days * 86400
    cold_user_idx = np.flatnonzero(users["cold"])
    cold_item_idx = np.flatnonzero(items["intro"] > 0)
    member_count = member.sum(axis=1)
    return {
        "generator": "mdrec.data.synthetic",
        "config": cfg.to_dict(),
        "columns": list(COLUMNS),
        "rows": int(len(frame)),
        "ctr": float(click.mean()),
        "bayes_auc": safe(bayes_auc, prob, click),
        "expected_bayes_auc": safe(expected_bayes_auc, prob),
        "bayes_gauc": _group_auc(prob, click, user_of),
        "domains": per_domain,
        "users": {
            "active": int(seen.sum()),
            "multi_domain_share": float(multi[seen].mean()),
            "configured_user_overlap": float(cfg.user_overlap),
            "pairs": {f"{names[a]}&{names[b]}": int(pair_users[a, b])
                      for a in range(n_dom) for b in range(a + 1, n_dom)},
            "impressions_per_user": {q: float(x) for q, x in zip(
                ("min", "median", "max"), np.percentile(np.bincount(user_of, minlength=cfg.num_users)[seen],
                                                        [0, 50, 100]))},
        },
        "items": {
            "total": int(cfg.num_items),
            "shown": int(shown.any(axis=1).sum()),
            "in_several_catalogues": int(np.sum(member_count > 1)),
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


# --------------------------------------------------------------------------------------------
# Writing


def write(log: SyntheticLog, out_dir, *, fmt: str = "parquet", valid_fraction: float = 0.1,
          test_fraction: float = 0.1, line_files: bool = False) -> dict[str, Path]:
    """Write ``log.<fmt>``, ``train/valid/test.<fmt>`` (time split) and ``meta.json``; with
    ``line_files`` also ``lines/<line>/train/valid/test.<fmt>`` per business line.

    Each file is written to a temporary name in ``out_dir`` and renamed into place, so a reader
    never sees half a file. ``meta.json`` is ``log.meta`` plus the split's row counts and cut
    timestamps. Returns {"log", "train", "valid", "test", "meta"} -> path.
    """
    if fmt not in ("parquet", "csv"):
        raise MdrecError(f"unknown format {fmt!r}", hint="use fmt='parquet' or fmt='csv'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, valid, test = log.split(valid_fraction, test_fraction)
    paths: dict[str, Path] = {}
    for name, part in (("log", log.frame), ("train", train), ("valid", valid), ("test", test)):
        paths[name] = atomic_write_table(part, out / f"{name}.{fmt}", fmt)
    meta = dict(log.meta)
    meta["split"] = {
        "valid_fraction": float(valid_fraction), "test_fraction": float(test_fraction),
        "rows": {"train": len(train), "valid": len(valid), "test": len(test)},
        "valid_start_timestamp": int(valid["timestamp"].iloc[0]) if len(valid) else None,
        "test_start_timestamp": int(test["timestamp"].iloc[0]) if len(test) else None,
    }
    meta["files"] = {name: path.name for name, path in paths.items()}
    if line_files:
        # lines/<line>/{train,valid,test}: one business line alone, the same time split (a target
        # line for `mdrec transfer`, or a per-line model).
        for line in sorted(log.frame["domain"].unique()):
            for name, part in (("train", train), ("valid", valid), ("test", test)):
                key = f"{line}/{name}"
                paths[key] = atomic_write_table(part[part["domain"] == line], out / "lines" / line / f"{name}.{fmt}", fmt)
                meta["files"][key] = str(paths[key].relative_to(out))
    paths["meta"] = atomic_write_json(out / "meta.json", meta)
    return paths


