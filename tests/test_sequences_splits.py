"""Behaviour sequences never see the event itself or later ones; splits do not overlap."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mdrec.data.sequences import build_history, build_profile
from mdrec.data.splits import leave_last_out, random_split, time_split


def _brute_force(users, items, times, include, max_length):
    out = []
    for j in range(len(users)):
        past = [(times[k], items[k], k) for k in range(len(users))
                if users[k] == users[j] and times[k] < times[j] and include[k]]
        past.sort()
        hist = [items[k] for _, _, k in past][-max_length:]
        out.append(hist + [""] * (max_length - len(hist)))
    return np.array(out, dtype=object)


def test_history_matches_brute_force_and_never_leaks():
    rng = np.random.default_rng(1)
    n = 400
    users = rng.choice(["u1", "u2", "u3", "u4"], n)
    items = np.array([f"i{k}" for k in range(n)], dtype=object)      # item k identifies event k
    times = rng.integers(0, 60, n)                                    # many ties on purpose
    clicks = rng.random(n) < 0.5
    history = build_history(users, items, times, 6, include=clicks)
    np.testing.assert_array_equal(history, _brute_force(users, items, times, clicks, 6))
    for j in range(n):
        for item in history[j][history[j] != ""]:
            k = int(item[1:])
            assert users[k] == users[j] and times[k] < times[j] and clicks[k]   # strictly earlier, same user


def test_history_is_independent_of_row_order():
    rng = np.random.default_rng(2)
    n = 200
    users = rng.choice(["a", "b"], n)
    items = np.array([f"i{k}" for k in range(n)], dtype=object)
    times = rng.integers(0, 1000, n)
    perm = rng.permutation(n)
    direct = build_history(users, items, times, 4)
    shuffled = build_history(users[perm], items[perm], times[perm], 4)
    np.testing.assert_array_equal(direct[perm], shuffled)


def test_time_split_orders_and_covers():
    times = np.random.default_rng(0).integers(0, 10_000, 5000)
    train, valid, test = time_split(times, 0.1, 0.1)
    assert len(train) + len(valid) + len(test) == len(times)
    assert times[train].max() < times[valid].min() and times[valid].max() < times[test].min()
    assert 0.05 < len(test) / len(times) < 0.15


def test_leave_last_out():
    users = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 3)
    times = np.array([5, 1, 4, 2, 3, 1, 2, 9, 8, 7])
    train, valid, test = leave_last_out(users, times)
    assert sorted(test.tolist()) == [0, 7]         # a's newest (t=5), c's newest (t=9)
    assert sorted(valid.tolist()) == [2, 8]        # the one before
    assert {5, 6} <= set(train.tolist())           # b has too few events: all train


def test_random_split_keeps_a_training_row_per_user():
    users = np.random.default_rng(0).choice([f"u{k}" for k in range(50)], 2000)
    train, valid, test = random_split(users, 0.1, 0.1, seed=3)
    assert len(set(train) | set(valid) | set(test)) == 2000
    assert not (set(train) & set(test)) and not (set(valid) & set(test))
    assert set(users[train]) == set(users)
    again = random_split(users, 0.1, 0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again))


def test_split_files_round_trip(tmp_path, tiny_spec_path):
    from conftest import tiny_frame
    from mdrec.cli import main

    frame = tiny_frame(300)
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert main(["data", "split", "--spec", str(tiny_spec_path), "--data", str(tmp_path / "log.csv"),
                 "--out", str(tmp_path / "split"), "--by", "time"]) == 0
    parts = {n: pd.read_parquet(tmp_path / "split" / f"{n}.parquet") for n in ("train", "valid", "test")}
    assert sum(len(p) for p in parts.values()) == 300
    ts = {n: p["ts"].astype(int) for n, p in parts.items()}     # CSV cells are kept as read (text)
    assert ts["train"].max() < ts["valid"].min() <= ts["valid"].max() < ts["test"].min()
    assert sorted(pd.concat(parts.values())["vec"]) == sorted(frame["vec"])   # raw columns kept


def test_profile_leaves_the_own_item_out_and_reads_only_the_source():
    # Training clicks of u1: a, b, c (b twice); u2: x. No time column: profiles, not sequences.
    source_users = np.array(["u1", "u1", "u1", "u1", "u2"], dtype=object)
    source_items = np.array(["a", "b", "c", "b", "x"], dtype=object)
    rows_users = np.array(["u1", "u1", "u2", "u3"], dtype=object)
    rows_items = np.array(["b", "z", "x", "a"], dtype=object)
    out = build_profile(source_users, source_items, rows_users, rows_items, max_length=2)
    assert out.tolist() == [["a", "c"],        # b is the row's own item: never its own history
                            ["c", "b"],        # the last two distinct, a repeated b at its latest place
                            ["", ""],          # x is u2's only click and the row's own item
                            ["", ""]]          # unknown user: empty


def test_a_split_profiled_from_itself_does_not_reveal_the_row_item_by_its_absence():
    # Leaving out only the row's own item makes every row's profile different by exactly the
    # target; a two-tower model then learns to retrieve the missing item. With folds, rows of one
    # user in the same fold share one profile, made of the other fold's clicks only.
    from mdrec.data.sequences import profile_fold

    users = np.array(["u"] * 40 + ["v"] * 3, dtype=object)
    items = np.array([f"i{k}" for k in range(40)] + ["a", "b", "c"], dtype=object)
    out = build_profile(users, items, users, items, max_length=50, other_fold=True)
    fold = profile_fold(users, items)
    assert set(fold[:40].tolist()) == {0, 1}                      # both folds are used
    for f in (0, 1):
        rows = np.flatnonzero((users == "u") & (fold == f))
        profiles = {tuple(out[r]) for r in rows}
        assert len(profiles) == 1                                 # the same for every row of the fold
        (profile,) = profiles
        assert set(profile) - {""} == set(items[(users == "u") & (fold != f)].tolist())
    # The fold is a property of the (user, item) pair, not of row order.
    assert (profile_fold(users[::-1], items[::-1]) == fold[::-1]).all()
    # Another split's rows (e.g. test) still see every training click but their own item.
    full = build_profile(users, items, np.array(["u"], dtype=object), np.array(["new"], dtype=object), 50)
    assert set(full[0]) - {""} == set(items[:40].tolist())


def test_leave_one_out_profiles_only_for_a_model_that_reads_no_user_id(tiny_spec_path):
    # A model that cannot memorise the user's set (two_tower, towers=shared: history items only)
    # reads every other item of its training row's user; anything reading the user id keeps folds.
    import pandas as pd

    from mdrec.data.log import DOMAIN, LABEL, Log
    from mdrec.data.sequences import add_profile, profile_fold
    from mdrec.models.registry import leave_one_out_profiles
    from mdrec.spec import load_spec

    assert leave_one_out_profiles("two_tower", {"towers": "shared"})
    assert leave_one_out_profiles("two_tower", {"towers": "sequence"})
    assert not leave_one_out_profiles("two_tower", {}) and not leave_one_out_profiles("star", {"towers": "shared"})
    spec = load_spec(tiny_spec_path)
    spec = type(spec)(**{**spec.__dict__, "time": None})
    items = [f"i{k}" for k in range(4)]          # fewer than the spec's max_length (5)
    log = Log(pd.DataFrame({"user_id": ["u"] * 4, "item_id": items, DOMAIN: ["a"] * 4, LABEL: [1] * 4}))
    loo = add_profile(log, log, spec, folds=False)
    folded = add_profile(log, log, spec)
    fold = profile_fold(np.array(["u"] * 4, dtype=object), np.array(items, dtype=object))
    assert len(set(fold)) == 2                                       # both folds hold items here
    for row, item in enumerate(items):
        assert set(loo[row]) - {""} == set(items) - {item}          # every other item, never its own
        other = {i for i, f in zip(items, fold) if f != fold[row]}
        assert set(folded[row]) - {""} == other                     # the other fold only
