"""The sanity baseline's arithmetic: smoothed user and item click rates around the global rate."""
from __future__ import annotations

import numpy as np
import pytest

from mdrec.evaluation.baselines import MeanBaseline


def test_smoothed_means():
    users = ["a", "a", "a", "b"]
    items = ["x", "y", "x", "y"]
    labels = [1, 1, 0, 0]
    baseline = MeanBaseline.fit(users, items, labels, alpha=2.0)
    g = 0.5
    user_a = (2 + 2 * g) / (3 + 2)
    item_x = (1 + 2 * g) / (2 + 2)
    assert baseline.user_rates["a"] == pytest.approx(user_a)
    assert baseline.predict(["a"], ["x"])[0] == pytest.approx(user_a + item_x - g)
    # Unseen user and item: the global rate.
    assert baseline.predict(["new"], ["new"])[0] == pytest.approx(g)


def test_ranks_by_user_and_item_rate():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 5000)
    items = rng.integers(0, 40, 5000)
    p = 0.05 + 0.4 * (users / 50) + 0.4 * (items / 40)
    labels = (rng.random(5000) < p).astype(int)
    baseline = MeanBaseline.fit(users, items, labels)
    scores = baseline.predict(users, items)
    assert np.corrcoef(scores, p)[0, 1] > 0.9
    assert ((scores > 0) & (scores < 1)).all()
