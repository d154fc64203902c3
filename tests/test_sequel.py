"""Sequel kNN: the transitions it counts, the neighbours it finds and the scores it gives, worked by hand."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mdrec.transfer.sequel import SequelKNN, transition_counts


def _events():
    """(user, item, clicked, time); item -1 is outside the catalogue. Worked out in time order:
    a: click 0 @10; 1 shown @20 (after 0); click 2 @30 (after 0); 3 shown @30, the row after the
       click of 2 (after 2); an unknown item @40 (skipped); click 1 @50 (after 2); click 0 @60 (after 1).
    b: 0 shown @1 (no click before it), click 3 @5 (none before it either).
    c: click of an unknown item @1, then 2 shown @2: its anchor is not in the catalogue, so no pair;
       c's events never chain onto a's or b's.
    """
    rows = [("a", 0, 1, 10), ("a", 1, 0, 20), ("a", 2, 1, 30), ("a", 3, 0, 30), ("a", -1, 0, 40), ("a", 1, 1, 50),
            ("a", 0, 1, 60), ("b", 3, 1, 5), ("b", 0, 0, 1), ("c", -1, 1, 1), ("c", 2, 0, 2)]
    order = [6, 9, 2, 0, 8, 4, 1, 10, 3, 7, 5]  # shuffled, except a's two rows at time 30 keep their order
    assert order.index(2) < order.index(3)
    users, items, clicked, times = zip(*[rows[i] for i in order])
    return np.array(users, object), np.array(items), np.array(clicked, bool), np.array(times)


def test_each_event_counts_under_the_same_users_latest_earlier_click():
    users, items, clicked, times = _events()
    counts = transition_counts(users, items, clicked, times, n_items=4).toarray()
    expected = np.zeros((4, 4))
    for anchor, then in ((0, 1), (0, 2), (2, 3), (2, 1), (1, 0)):
        expected[anchor, then] = 1
    np.testing.assert_array_equal(counts, expected)


def test_without_times_a_users_clicked_items_count_as_pairs_once_each_way():
    users, items, clicked, _ = _events()
    counts = transition_counts(users, items, clicked, None, n_items=4).toarray()
    # a clicked 0, 2, 1 (0 twice: one pair still); b only 3; c nothing in the catalogue.
    expected = np.zeros((4, 4))
    expected[np.ix_([0, 1, 2], [0, 1, 2])] = 1
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(counts, expected)


def _known_sequels() -> sp.csr_matrix:
    """Nine items: big-line anchors s0-s2 (0-2) and what follows them x0-x2 (3-5); new-line items
    t0-t2 (6-8). s_k and t_k are both followed by x_k (k+3 times), never by each other: only what
    follows them makes them alike."""
    counts = np.zeros((9, 9))
    for k in range(3):
        counts[k, 3 + k] = counts[6 + k, 3 + k] = 3 + k
    return sp.csr_matrix(counts)


def test_items_followed_by_the_same_things_are_each_others_shelf_across_lines():
    model = SequelKNN(rank=6, neighbours=1, share=0.6).fit(_known_sequels(), target=np.array([6, 7, 8]))
    shelf = model.shelf().toarray()
    for k in range(3):
        assert shelf[k].tolist() == [1.0 if c == k else 0.0 for c in range(3)]
    assert shelf[7, 1] == 0  # a target item is never its own neighbour
    prior = np.array([0.5, 0.25, 0.25])
    clicks = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0, 0, 0, 0],     # clicked s1
                                     [1, 1, 0, 0, 0, 0, 0, 0, 0],     # clicked s0 and s1: the mean shelf
                                     [0, 0, 0, 0, 0, 0, 0, 0, 0]]))   # no click: the prior alone
    scores = model.score(clicks, prior)
    np.testing.assert_allclose(scores, [[0.4 * 0.5, 0.6 + 0.4 * 0.25, 0.4 * 0.25],
                                        [0.6 * 0.5 + 0.2, 0.6 * 0.5 + 0.1, 0.1],
                                        [0.5, 0.25, 0.25]], rtol=1e-6)


def test_the_factorisation_is_the_same_for_the_same_seed():
    rng = np.random.default_rng(0)
    counts = sp.random(60, 60, density=0.1, random_state=1, data_rvs=lambda n: rng.integers(1, 5, n))
    first = SequelKNN(rank=8, seed=3).fit(counts, np.arange(30, 60))
    again = SequelKNN(rank=8, seed=3).fit(counts, np.arange(30, 60))
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert (first.shelf() != again.shelf()).nnz == 0


def test_a_smaller_shelf_after_the_fit_keeps_the_nearest_and_a_larger_one_is_refused():
    rng = np.random.default_rng(0)
    counts = sp.random(80, 80, density=0.1, random_state=2, data_rvs=lambda n: rng.integers(1, 5, n))
    wide = SequelKNN(rank=8, neighbours=20).fit(counts, np.arange(40, 80))
    narrow = SequelKNN(rank=8, neighbours=5).fit(counts, np.arange(40, 80))
    wide.neighbours = 5
    np.testing.assert_array_equal(wide.shelf().toarray(), narrow.shelf().toarray())
    assert set(np.unique(narrow.shelf().data)) == {np.float32(0.2)} and set(narrow.shelf().getnnz(1)) == {5}
    # The nearest come best first: the first column is each item's most similar target item.
    similarity = narrow.vectors @ narrow.vectors[40:].T
    similarity[np.arange(40, 80), np.arange(40)] = -np.inf
    np.testing.assert_array_equal(narrow.nearest[:, 0], similarity.argmax(1))
    narrow.neighbours = 6
    with pytest.raises(ValueError, match="above the 5 it was fitted with"):
        narrow.shelf()


def test_a_lower_rank_keeps_the_leading_factors_and_finds_its_own_neighbours():
    rng = np.random.default_rng(0)
    counts = sp.random(80, 80, density=0.1, random_state=2, data_rvs=lambda n: rng.integers(1, 5, n))
    full = SequelKNN(rank=8, neighbours=3).fit(counts, np.arange(40, 80))
    low = full.truncated(2)
    leading = full.factors[:, :2] / np.linalg.norm(full.factors[:, :2], axis=1, keepdims=True)
    np.testing.assert_allclose(low.vectors, leading, rtol=1e-6)
    similarity = leading @ leading[40:].T
    similarity[np.arange(40, 80), np.arange(40)] = -np.inf
    np.testing.assert_array_equal(low.nearest[:, 0], similarity.argmax(1))
    assert full.vectors.shape[1] == 8 and low.rank == 2  # the fit itself is left as it was
    with pytest.raises(ValueError, match="the rank it was fitted with"):
        full.truncated(9)


@pytest.mark.parametrize("kwargs, text", [({"rank": 0}, "rank must be >= 1"), ({"neighbours": 0}, "neighbours"),
                                          ({"share": 1.5}, "share must be in [0, 1]")])
def test_settings_out_of_range_are_refused(kwargs, text):
    with pytest.raises(ValueError, match=text.replace("[", r"\[").replace("]", r"\]")):
        SequelKNN(**kwargs)


def test_a_log_without_transitions_is_refused_and_scoring_needs_a_fit():
    with pytest.raises(ValueError, match="no transitions"):
        SequelKNN().fit(sp.csr_matrix((5, 5)), np.arange(5))
    with pytest.raises(RuntimeError, match="fit"):
        SequelKNN().score(sp.csr_matrix((1, 5)), np.full(5, 0.2))
