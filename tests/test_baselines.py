"""The sanity baseline's arithmetic: smoothed user and item click rates around the global rate."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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


def test_alpha_is_chosen_on_validation_where_light_users_are_noise():
    # 50 heavy users (500 impressions) whose rates differ; 5,000 light users (2 impressions) at a
    # common rate: their observed 0 / 0.5 / 1 is noise that only heavy smoothing ignores.
    rng = np.random.default_rng(0)
    heavy = np.repeat(np.arange(50), 500)
    light = np.repeat(np.arange(50, 5050), 2)
    users = np.concatenate([heavy, light]).astype(str)
    rate = np.concatenate([np.linspace(0.05, 0.5, 50)[heavy], np.full(len(light), 0.2)])
    items = np.zeros(len(users), dtype=int).astype(str)
    labels = (rng.random(len(users)) < rate).astype(int)
    valid_labels = (rng.random(len(users)) < rate).astype(int)
    baseline = MeanBaseline.fit(users, items, labels, alpha=1.0)
    chosen, grid = baseline.choose_alpha(users, items, valid_labels)
    assert chosen.alpha == max(grid, key=grid.get) and chosen.alpha >= 10
    assert grid[chosen.alpha] > grid[1.0] + 0.02, grid
    # The counts are fitted once: choosing alpha changes the smoothing only.
    assert chosen.user_counts is baseline.user_counts


def test_first_order_logistic_recovers_additive_effects_and_ignores_unseen_ids():
    from mdrec.evaluation.baselines.logistic import FirstOrderLogistic

    rng = np.random.default_rng(1)
    n = 40_000
    users, items, lines = rng.integers(0, 30, n), rng.integers(0, 20, n), rng.integers(0, 2, n)
    w_user, w_item, w_line = rng.normal(0, 1, 30), rng.normal(0, 1, 20), np.array([-0.5, 0.5])
    logit = -1.0 + w_user[users] + w_item[items] + w_line[lines]
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    model = FirstOrderLogistic(strength=10.0).fit(users.astype(str), items.astype(str), lines.astype(str), labels)
    grid_u, grid_i = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    p = model.predict(grid_u.ravel().astype(str), grid_i.ravel().astype(str), np.zeros(600, int).astype(str))
    truth = -1.0 + w_user[grid_u.ravel()] + w_item[grid_i.ravel()] - 0.5
    assert np.corrcoef(np.log(p / (1 - p)), truth)[0, 1] > 0.98
    # An unseen user adds nothing: the same probability as the intercept plus item and line weights.
    coef = model.model.coef_.ravel()
    item_0 = model.vocabularies[1].get_loc("0")
    line_0 = model.vocabularies[2].get_loc("0")
    expected = model.model.intercept_[0] + coef[30 + item_0] + coef[50 + line_0]
    got = model.predict(np.array(["nobody"]), np.array(["0"]), np.array(["0"]))[0]
    assert got == pytest.approx(1 / (1 + np.exp(-expected)))


def test_choosing_the_logistic_strength_walks_up_from_the_strongest_and_stops_past_the_peak():
    from mdrec.evaluation.baselines.logistic import FirstOrderLogistic

    # Few rows per id: strong regularisation wins on validation, the weakest overfits.
    rng = np.random.default_rng(3)
    n = 6_000
    users, items = rng.integers(0, 400, n), rng.integers(0, 300, n)
    logit = -1.0 + rng.normal(0, 0.5, 400)[users] + rng.normal(0, 0.5, 300)[items]
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = (users.astype(str), items.astype(str), np.zeros(n, int).astype(str), labels)
    train, valid = tuple(a[:4_000] for a in ids), tuple(a[4_000:] for a in ids)
    strengths = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    chosen, grid = FirstOrderLogistic.choose(train, valid, strengths=strengths)
    # Each tried strength scores as its own fit does, and the best of them is kept.
    cold = {c: FirstOrderLogistic(c).fit(*train) for c in grid}
    for c, auc in grid.items():
        assert auc == roc_auc_score(valid[3], cold[c].predict(*valid[:3]))
    assert max(grid, key=grid.get) == chosen.strength
    np.testing.assert_array_equal(chosen.predict(*valid[:3]), cold[chosen.strength].predict(*valid[:3]))
    # The walk went up from the strongest and stopped after two strengths in a row below the best.
    tried = sorted(grid)
    assert tried == list(strengths[:len(tried)]) and len(tried) < len(strengths)
    assert all(grid[c] < grid[chosen.strength] for c in tried[-2:]) and chosen.strength == tried[-3]


def test_a_graded_logistic_fit_reads_every_threshold_and_learns_the_ids_better():
    from mdrec.data.grades import GradeLevels
    from mdrec.evaluation.baselines.logistic import FirstOrderLogistic
    from mdrec.spec import parse_spec

    # Grades 1-5 from a cumulative-logit model: P(grade >= k + 1) = σ(s + cut_k); the click is >= 4.
    rng = np.random.default_rng(2)
    n, cuts = 3_000, np.array([2.0, 0.5, -1.0, -2.5])
    users, items = rng.integers(0, 60, n), rng.integers(0, 40, n)
    w_user, w_item = rng.normal(0, 1, 60), rng.normal(0, 1, 40)
    s = w_user[users] + w_item[items]
    grades = 1.0 + (rng.random(n)[:, None] < 1 / (1 + np.exp(-(s[:, None] + cuts)))).sum(axis=1)
    spec = parse_spec({"name": "g", "label": {"column": "rating", "positive_if": ">= 4"},
                       "features": [{"name": "user_id", "role": "user_id", "type": "categorical"},
                                    {"name": "item_id", "role": "item_id", "type": "categorical"}]})
    levels = GradeLevels.fit(dict(zip(*np.unique(grades, return_counts=True))), spec)
    assert isinstance(levels, GradeLevels) and levels.click_level == 3
    ids = (users.astype(str), items.astype(str), np.zeros(n, int).astype(str), (grades >= 4).astype(int))
    click = FirstOrderLogistic(strength=1.0).fit(*ids)
    graded = FirstOrderLogistic(strength=1.0).fit(*ids, grades=grades, levels=levels, grade_weight=1.0)
    # Four labels per row instead of one: the user weights come out nearer the truth.
    fitted = {name: m.model.coef_.ravel()[:60] for name, m in (("click", click), ("graded", graded))}
    truth = w_user[np.array(click.vocabularies[0]).astype(int)]
    assert np.corrcoef(fitted["graded"], truth)[0, 1] > np.corrcoef(fitted["click"], truth)[0, 1] + 0.02
    # The intercept is the click's cut; the threshold columns (>= 2, 3, 5) hold the others'.
    assert graded.model.intercept_[0] == pytest.approx(-1.0, abs=0.3)
    np.testing.assert_allclose(graded.model.coef_.ravel()[-3:] + graded.model.intercept_[0], cuts[[0, 1, 3]], atol=0.4)
    # It predicts the click: σ(intercept + the row's id weights), threshold columns left out.
    row = graded.predict(np.array(["0"]), np.array(["0"]), np.array(["0"]))[0]
    coef = graded.model.coef_.ravel()
    z = graded.model.intercept_[0] + coef[graded.vocabularies[0].get_loc("0")] \
        + coef[60 + graded.vocabularies[1].get_loc("0")] + coef[100]
    assert row == pytest.approx(1 / (1 + np.exp(-z)))


def test_itemknn_by_hand():
    import scipy.sparse as sp

    from mdrec.evaluation.baselines.itemknn import ItemKNN

    # users x items: a clicked 0,1; b clicked 0,1,2; c clicked 2,3.
    clicks = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], np.float32))
    knn = ItemKNN(neighbours=1, shrink=1.0).fit(clicks)
    # n = [2, 2, 2, 1]; c(0,1) = 2, c(0,2) = c(1,2) = 1, c(2,3) = 1.
    s01 = 2 / (np.sqrt(2 * 2) + 1)          # 0.667
    s12 = 1 / (np.sqrt(2 * 2) + 1)          # 0.333
    s23 = 1 / (np.sqrt(2 * 1) + 1)          # 0.414
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = s01   # items 0 and 1 keep each other (their best neighbour)
    expected[2, 3] = s23                    # item 2: s(2,3) 0.414 beats s(2,0) = s(2,1) = 0.333
    expected[3, 2] = s23
    np.testing.assert_allclose(knn.similarity.toarray(), expected)
    # A user who clicked items 1 and 2 reaches item 1's neighbour (0) and item 2's (3); never 1 or 2
    # themselves, and not item 2 from item 1 (pruned: not item 1's best neighbour).
    profile = sp.csr_matrix(np.array([[0, 1, 1, 0]], np.float32))
    np.testing.assert_allclose(knn.score(profile), [[s01, 0, 0, s23]], rtol=1e-6)
    # Unpruned, item 1's row also holds item 2 (and item 2's row items 0 and 1).
    full = ItemKNN(neighbours=10, shrink=1.0).fit(clicks)
    np.testing.assert_allclose(full.score(profile), [[s01 + s12, s12, s12, s23]], rtol=1e-6)


# More users than items: the item-side solve; fewer: the user-side one. Unclicked items (empty
# columns) leave the solve: the full-catalogue closed form gives them B = 0, so must the fit.
@pytest.mark.parametrize("users, unclicked", [(80, 0), (30, 0), (80, 12), (30, 12)])
def test_ease_matches_the_closed_form(users, unclicked):
    import scipy.sparse as sp

    from mdrec.evaluation.baselines.ease import EASE

    rng = np.random.default_rng(users)
    dense = (rng.random((users, 50)) < 0.2).astype(np.float32)
    dense[:, rng.permutation(50)[:unclicked]] = 0.0
    clicks = sp.csr_matrix(dense)
    x = clicks.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(50))
    b = np.eye(50) - p / np.diag(p)[None, :]       # Steck's B: zero diagonal by construction
    assert np.abs(np.diag(b)).max() < 1e-9
    profiles = sp.csr_matrix((rng.random((6, 50)) < 0.2).astype(np.float32))
    scores = EASE(l2=3.0).fit(clicks).score(profiles)
    np.testing.assert_allclose(scores, profiles.toarray() @ b, atol=1e-5)
    assert scores.shape == (6, 50) and not scores[:, x.sum(0) == 0].any()


def test_ease_of_a_line_without_training_clicks_scores_nothing():
    import scipy.sparse as sp

    from mdrec.evaluation.baselines.ease import EASE

    # A line the spec lists but the training split lacks: no user row at all (B = 0: no item
    # says anything about another).
    profiles = sp.csr_matrix(np.eye(3, 4, dtype=np.float32))
    np.testing.assert_array_equal(EASE(l2=3.0).fit(sp.csr_matrix((0, 4), dtype=np.float32)).score(profiles),
                                  np.zeros((3, 4)))


def test_ease_refuses_a_solve_too_large_with_the_sizes():
    import scipy.sparse as sp

    from mdrec.evaluation.baselines.ease import EASE, TooLarge

    with pytest.raises(TooLarge, match=r"12 x 12 solve \(15 items, 12 users\); the limit is 10"):
        EASE(max_size=10).fit(sp.csr_matrix(np.ones((12, 15), np.float32)))
