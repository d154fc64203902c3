"""The user x item click matrix the retrieval baselines fit and score with.

Rows are users, columns the rows of a run's :class:`~mdrec.data.catalogue.Catalogue`; an entry
is 1 when the user clicked the item at least once (repeat clicks do not weigh more, as in ItemKNN's
and EASE's papers). Clicks of items outside the catalogue are left out: no baseline could return
them, and the ranking counts them as misses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mdrec.data.catalogue import Catalogue, item_keys
from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.spec import Spec


def click_pairs(logs: Sequence[Log], spec: Spec, catalogue: Catalogue, line: str | None = None) -> pd.DataFrame:
    """Distinct (user, item) clicks of ``logs`` (columns user: object, item: catalogue row), only
    the clicks made in ``line`` when one is named."""
    parts = []
    for log in logs:
        keep = log.frame[LABEL].to_numpy() > 0
        if line is not None:
            keep &= log.frame[DOMAIN].to_numpy(dtype=object) == line
        parts.append(pd.DataFrame({"user": log.frame[spec.user_id.name].to_numpy(dtype=object)[keep],
                                   "item": catalogue.index_of(item_keys(log, spec)[keep])}))
    pairs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"user": [], "item": []})
    return pairs[pairs["item"] >= 0].drop_duplicates(ignore_index=True)


def click_matrix(pairs: pd.DataFrame, users: Sequence, n_items: int) -> sp.csr_matrix:
    """Binary csr [len(users), n_items]: row r holds the clicks of ``users[r]`` (pairs of other
    users are ignored; a user without clicks is an empty row)."""
    index = pd.Index(np.asarray(users, dtype=object))
    if not index.is_unique:
        raise ValueError("users must be distinct")
    row = index.get_indexer(pairs["user"].to_numpy(dtype=object))
    keep = row >= 0
    data = np.ones(int(keep.sum()), np.float32)
    return sp.csr_matrix((data, (row[keep], pairs["item"].to_numpy(np.int64)[keep])), shape=(len(users), n_items))


def training_matrix(pairs: pd.DataFrame, n_items: int) -> sp.csr_matrix:
    """Binary csr [users with a click, n_items]: what a baseline is fitted on."""
    return click_matrix(pairs, pd.unique(pairs["user"].to_numpy(dtype=object)), n_items)
