"""Which item each impression shows and whether it is clicked: the true click model, the
popularity feed, the "related to your recent clicks" shelf, and devices (see the package doc,
"Clicks" and "Exposure")."""
from __future__ import annotations

import numpy as np

from mdrec.data.synthetic.config import DEVICES, SyntheticConfig

_DEVICE_BASE_EFFECT = np.array([0.15, 0.0, -0.25])  # ios users click a little more, web less
_BASE_SCALE = 1.0  # interaction strength; tuned so per-domain Bayes AUC lands near 0.76-0.82


class ClickModel:
    """The true click model: per-domain shifts, scales, device effects and biases b_d.

    Index arrays ``uu``, ``ii``, ``dd``, ``dev`` (users, items, domains, devices) are int [n];
    :meth:`score` and :meth:`logit` return float64 [n].
    """

    def __init__(self, rng, cfg: SyntheticConfig, users: dict, items: dict, comp_std: float):
        n_dom, k = len(cfg.domains), cfg.latent_dim
        self.users, self.items, self.shift = users, items, cfg.domain_shift
        self.target_ctr = rng.permutation(np.linspace(0.04, 0.12, n_dom))
        self.domain_scale = _BASE_SCALE * rng.uniform(0.85, 1.15, n_dom)
        self.device_effect = _DEVICE_BASE_EFFECT[None, :] + rng.normal(0.0, 0.08, (n_dom, len(DEVICES)))
        # [domains, users, k] and [domains, items, k]
        self.user_shift = np.stack([rng.normal(0.0, comp_std, (cfg.num_users, k)) for _ in range(n_dom)])
        self.item_shift = np.stack([rng.normal(0.0, comp_std, (cfg.num_items, k)) for _ in range(n_dom)])
        self.domain_bias = np.zeros(n_dom)  # b_d, set by solve_biases

    def score(self, uu, ii, dd, dev) -> np.ndarray:
        """The logit without b_d."""
        shift = self.shift
        inter = np.einsum("ij,ij->i", self.users["u"][uu] + shift * self.user_shift[dd, uu],
                          self.items["v"][ii] + shift * self.item_shift[dd, ii])
        return (self.domain_scale[dd] * inter / (1.0 + shift ** 2) + self.users["bias"][uu]
                + self.items["bias"][ii] + self.device_effect[dd, dev])

    def logit(self, uu, ii, dd, dev) -> np.ndarray:
        return self.score(uu, ii, dd, dev) + self.domain_bias[dd]

    def solve_biases(self, user_of: np.ndarray, item_of: np.ndarray, dom: np.ndarray, device: np.ndarray) -> None:
        """Set each b_d so the domain's mean click probability over these impressions (the
        popularity feed's) is its target CTR."""
        for d in range(len(self.domain_bias)):
            rows = np.flatnonzero(dom == d)
            self.domain_bias[d] = _solve_bias(self.score(user_of[rows], item_of[rows], dom[rows], device[rows]),
                                              self.target_ctr[d])

    def describe(self, cfg: SyntheticConfig, shelf: np.ndarray, click: np.ndarray) -> dict:
        """The meta's "click_model": formula, parameters and the exposure rule; ``shelf`` and
        ``click`` (bool / 0-1 [impressions]) give the shelf's realised shares."""
        k, shift = cfg.latent_dim, self.shift
        return {
            "formula": ("logit = b_d + scale_d * (u + shift*s_ud).(v + shift*t_id) / (1 + shift^2) "
                        "+ user_bias + item_bias + device_effect[d, device]; click ~ Bernoulli(sigmoid(logit))"),
            "description": (
                "u, v: shared user/item factors; s_ud, t_id: per-domain shifts, all with components "
                f"N(0, 1/sqrt({k})). Item content (category, tags, title, price, item_emb) is generated "
                "from v only. user_bias ~ N(0, 0.35^2); item_bias = 0.25*popularity + N(0, 0.35^2). "
                "b_d is solved so the domain's mean click probability equals target_ctr[d]. Exposure "
                "is popularity-driven and independent of the user's taste."),
            "shift": float(shift),
            "domain_scale": {name: float(self.domain_scale[d]) for d, name in enumerate(cfg.domains)},
            "domain_bias": {name: float(self.domain_bias[d]) for d, name in enumerate(cfg.domains)},
            "target_ctr": {name: float(self.target_ctr[d]) for d, name in enumerate(cfg.domains)},
            "device_effect": {name: {dev: float(self.device_effect[d, j]) for j, dev in enumerate(DEVICES)}
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


def sample_devices(rng, n_dom: int, users: dict, user_of: np.ndarray, dom: np.ndarray) -> np.ndarray:
    """Mostly the user's own phone; each domain has its own share of web traffic."""
    n_users = len(users["counts"])
    phone = (rng.random(n_users) >= 0.45).astype(np.int64)  # 0 ios, 1 android
    web_share = rng.uniform(0.02, 0.30, n_dom)
    n = user_of.size
    own = phone[user_of]
    device = np.where(rng.random(n) < 0.9, own, 1 - own)
    device[rng.random(n) < web_share[dom]] = 2
    return device


def sample_items(rng, cfg: SyntheticConfig, items: dict, dom: np.ndarray, when: np.ndarray) -> np.ndarray:
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


def related_items(rng, cfg: SyntheticConfig, items: dict) -> np.ndarray:
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


def expose_and_click(rng, cfg: SyntheticConfig, items: dict, related: np.ndarray, user_of: np.ndarray,
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
