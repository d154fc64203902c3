"""The retrieval ceiling of a synthetic log: each user's expected clicks on every item of a line,
from the generator's own click model and exposure rule.

A ranking model sees clicks; the generator knows why they happened. For a user's impressions in a
line (their times and devices, and the clicks the user made before each one, in any line) the
exposure rule of :mod:`~mdrec.data.synthetic.clicks` gives the probability that the impression shows
item i, and the click model the probability that it is then clicked. Summed over the user's
impressions in the line, that is the expected number of clicks on i::

    E[clicks_i] = sum_t P(impression t shows i) * sigmoid(logit(u, i, line, device_t))
    P(shows i)  = (1 - r_t) * feed_t(i) + r_t * (shelf_t(i) + fallback_t * feed_t(i))

with feed_t the line's popularity weights over the items introduced by then, r_t the shelf's share
(``related_share`` once the user has clicked anything, else 0), shelf_t(i) the chance that an
anchor among the user's newest clicks (weights 2^-j) has i among its related items (each picked
with 1 / related_items) and fallback_t the shelf's mass on items not yet introduced, which the
generator replaces with the feed's item. Ranking by it is the best any model can do knowing the
impressions but not their outcomes: the ceiling row of the cold-start table
(:mod:`mdrec.workflows.cold_start`), the retrieval counterpart of the Bayes AUC.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mdrec.data.synthetic.clicks import ClickModel
from mdrec.data.synthetic.config import SyntheticConfig


@dataclass(frozen=True)
class ClickTruth:
    """What the generator knows and the frame does not: its click model, the item tables, the
    related-items table and every impression in generation order (int/float arrays [n]: user
    index, line index, time in [0, 1], device index, shown item index, click 0/1)."""

    config: SyntheticConfig
    model: ClickModel
    user_ids: np.ndarray    # object [users]: the frame's user_id of each user index
    item_ids: np.ndarray    # object [items]
    catalogues: list        # per line: item indices int [catalogue]
    feed_weights: list      # per line: popularity weights float [catalogue], aligned with catalogues
    intro: np.ndarray       # float [items]: introduction time (0 = from the start)
    related: np.ndarray     # int [lines, items, related_items]
    user_of: np.ndarray
    line_of: np.ndarray
    when: np.ndarray
    device: np.ndarray
    item_of: np.ndarray
    click: np.ndarray

    def expected_clicks(self, users: Sequence[str], line: str, items: Sequence[str]) -> np.ndarray:
        """E[clicks] of each user on each item over the user's impressions in ``line``, float64
        [len(users), len(items)]; 0 for an item outside the line's catalogue and for a user the log
        does not know or who has no impression there."""
        d = list(self.config.domains).index(line)
        catalogue, weights = self.catalogues[d], np.asarray(self.feed_weights[d], np.float64)
        position = {key: j for j, key in enumerate(self.item_ids[catalogue])}
        columns = np.asarray([position.get(key, -1) for key in items])
        slot_of = np.full(len(self.item_ids), -1)  # item index -> position in the catalogue
        slot_of[catalogue] = np.arange(catalogue.size)
        # Every user's events in the generator's walk (by user, then time, then order), sorted once.
        walk = np.lexsort((np.arange(self.user_of.size), self.when, self.user_of))
        walk_users = self.user_of[walk]
        user_index = {key: u for u, key in enumerate(self.user_ids)}
        out = np.zeros((len(users), len(items)))
        for row, user in enumerate(users):
            u = user_index.get(user)
            if u is not None:
                events = walk[np.searchsorted(walk_users, u, "left"):np.searchsorted(walk_users, u, "right")]
                per_item = self._user_expected_clicks(u, d, events, catalogue, weights, slot_of)
                out[row, columns >= 0] = per_item[columns[columns >= 0]]
        return out

    def _user_expected_clicks(self, u: int, d: int, events: np.ndarray, catalogue: np.ndarray, weights: np.ndarray,
                              slot_of: np.ndarray) -> np.ndarray:
        """float64 [catalogue]: user u's expected clicks on line d's items (the module's formula),
        from the user's ``events`` in walk order; ``slot_of``: item index -> catalogue position."""
        cfg = self.config
        recent: list[int] = []  # newest first, as the generator keeps them
        total = np.zeros(catalogue.size)
        for e in events:
            if self.line_of[e] == d:
                when = self.when[e]
                live = self.intro[catalogue] <= when
                feed = np.where(live, weights, 0.0)
                feed /= feed.sum()
                shown = feed
                if recent:
                    anchors = 0.5 ** np.arange(len(recent))
                    anchors /= anchors.sum()
                    shelf = np.zeros(catalogue.size)
                    picks = self.related[d, recent]                         # [anchors, related_items]
                    share = anchors[:, None] / picks.shape[1]
                    ok = self.intro[picks] <= when
                    np.add.at(shelf, slot_of[picks[ok]], np.broadcast_to(share, picks.shape)[ok])
                    fallback = 1.0 - shelf.sum()
                    shown = (1.0 - cfg.related_share) * feed + cfg.related_share * (shelf + fallback * feed)
                n = catalogue.size
                logit = self.model.logit(np.full(n, u), catalogue, np.full(n, d), np.full(n, self.device[e]))
                total += shown / (1.0 + np.exp(-logit))
            if self.click[e]:
                recent = ([int(self.item_of[e])] + recent)[:cfg.recent_clicks]
        return total
