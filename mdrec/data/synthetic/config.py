"""The synthetic log's knobs: :class:`SyntheticConfig` with its validation, the named presets, and
the constants every part of the generator shares (vocabularies of the categorical columns, the
column order, the cold cut)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mdrec.errors import MdrecError

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
DEVICES = ("ios", "android", "web")
COLD_FRACTION = 0.8  # cold users/items only appear after this fraction of the time span
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
            if not is_real(share) or not share > 0:
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
    """The named configuration of :data:`PRESETS` with ``overrides`` applied."""
    if name not in PRESETS:
        raise MdrecError(f"unknown synthetic preset '{name}'", hint=f"use one of: {', '.join(PRESETS)}")
    return SyntheticConfig(**{**PRESETS[name], **overrides})


def _as_tuple(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        _bad(name, value, "must be a sequence", "use a tuple, e.g. ('main', 'mini')")
    return tuple(value)


def is_real(value) -> bool:
    """A finite int or float (numpy scalars included), not a bool."""
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
    if not is_real(value) or not low <= float(value) <= high:
        _bad(name, value, f"must be a number between {low:g} and {high:g}",
             f"pick a value in [{low:g}, {high:g}]")
