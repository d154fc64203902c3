"""Statistics of the training rows as features: hand-worked sums for the fold and time modes, a
training row's statistics blind to its own label, validation rows reading every training row, the
written folder (spec, columns, provenance) feeding `mdrec train`, and the errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mdrec.data.columns import DOMAIN, LABEL
from mdrec.data.statistics import StatisticsSettings, compute, query_sums, training_sums, write_statistics
from mdrec.errors import MdrecError
from mdrec.spec import load_spec, parse_spec

GRADED = parse_spec({"name": "g", "label": {"column": "rating", "positive_if": ">= 4"},
                     "domain": {"column": "line"},
                     "features": [{"name": "user", "role": "user_id", "type": "categorical"},
                                  {"name": "item", "role": "item_id", "type": "categorical"}]})


def test_other_folds_by_hand():
    codes = np.array(["a", "a", "a", "b", "a"], dtype=object)
    values = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    folds = np.array([0, 1, 0, 1, 1])
    sums, rows = training_sums(codes, values, None, folds)
    # a's rows: fold 0 holds rows 0, 2 (sum 2), fold 1 rows 1, 4 (sum 1); b alone in fold 1.
    np.testing.assert_array_equal(sums, [1.0, 2.0, 1.0, 0.0, 2.0])
    np.testing.assert_array_equal(rows, [2, 2, 2, 0, 2])


def test_earlier_rows_by_hand_ties_excluded():
    codes = np.array(["a", "a", "b", "a", "a", "a"], dtype=object)
    time = np.array([5, 1, 1, 3, 3, 9])
    values = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    sums, rows = training_sums(codes, values, time, None)
    # a at t=1 (1), t=3 (0 and 1: each other's tie, not earlier), t=5 (1), t=9 (0).
    np.testing.assert_array_equal(sums, [2.0, 0.0, 0.0, 1.0, 1.0, 3.0])
    np.testing.assert_array_equal(rows, [3, 0, 0, 1, 1, 4])


def test_query_rows_read_every_training_row():
    sums, rows = query_sums(np.array(["a", "b", "a"], dtype=object), np.array([1.0, 0.0, 3.0]),
                            np.array(["a", "c"], dtype=object))
    np.testing.assert_array_equal(sums, [4.0, 0.0])
    np.testing.assert_array_equal(rows, [2, 0])


def _canonical(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rating = rng.integers(1, 6, n).astype(float)
    frame = pd.DataFrame({"user": rng.choice(["u1", "u2", "u3"], n), "item": rng.choice(["i1", "i2"], n),
                          DOMAIN: rng.choice(["x", "y"], n), LABEL: (rating >= 4).astype(np.int8)})
    return frame, rating


@pytest.mark.parametrize("with_time", [False, True])
def test_a_training_row_never_sees_its_own_label(with_time):
    rng = np.random.default_rng(0)
    codes = rng.choice(["a", "b", "c"], 50).astype(object)
    values = rng.integers(0, 2, 50).astype(float)
    time = rng.integers(0, 10, 50) if with_time else None
    folds = None if with_time else rng.permutation(50) % 3
    sums, rows = training_sums(codes, values, time, folds)
    seen_by_others = 0
    for i in range(50):
        flipped = values.copy()
        flipped[i] = 1 - flipped[i]
        other_sums, other_rows = training_sums(codes, flipped, time, folds)
        assert other_sums[i] == sums[i] and other_rows[i] == rows[i]  # not by itself ...
        seen_by_others += int((other_sums != sums).any())
    assert seen_by_others > 40  # ... though by rows of its key in other folds or later


def test_unseen_key_gets_the_training_mean():
    train, rating = _canonical(30, 0)
    valid = pd.DataFrame({"user": ["new"], "item": ["i1"], DOMAIN: ["x"], LABEL: np.array([1], np.int8)})
    out = compute(GRADED, train, {"valid": valid}, {"train": rating, "valid": np.array([5.0])},
                  StatisticsSettings())["valid"]
    assert out.loc[0, "stat_user_click_mean"] == pytest.approx(train[LABEL].mean())
    assert out.loc[0, "stat_user_rating_mean"] == pytest.approx(rating.mean())
    assert out.loc[0, "stat_user_log_rows"] == 0.0 and out.loc[0, "stat_user_line_log_rows"] == 0.0
    assert out.loc[0, "stat_item_log_rows"] == pytest.approx(np.log1p((train["item"] == "i1").sum()))


def test_cold_rows_read_as_an_unseen_user_in_every_user_column_only():
    train, rating = _canonical(400, 1)
    # Validation: 3 rows of known users, 1 of a new one -> by default a quarter of the training rows.
    valid = pd.DataFrame({"user": ["u1", "u2", "u3", "new"], "item": ["i1"] * 4, DOMAIN: ["x"] * 4,
                          LABEL: np.array([1, 0, 1, 1], np.int8)})
    graded = {"train": rating, "valid": np.array([5.0, 1.0, 4.0, 5.0])}
    plain = compute(GRADED, train, {"valid": valid}, graded, StatisticsSettings(cold_share=0.0))
    cold = compute(GRADED, train, {"valid": valid}, graded, StatisticsSettings())
    user_columns = [c for c in cold["train"].columns if c.startswith("stat_user")]
    changed = (cold["train"][user_columns] != plain["train"][user_columns]).any(axis=1)
    unseen = ((cold["train"]["stat_user_log_rows"] == 0) & (cold["train"]["stat_user_line_log_rows"] == 0)
              & np.isclose(cold["train"]["stat_user_click_mean"], train[LABEL].mean())
              & np.isclose(cold["train"]["stat_user_line_rating_mean"], rating.mean()))
    assert 0.18 < unseen.mean() < 0.32                      # about a quarter (400 seeded draws)
    assert (unseen | ~changed).all()                        # a changed row is an unseen user's in every user column
    item_columns = [c for c in cold["train"].columns if c.startswith("stat_item")]
    pd.testing.assert_frame_equal(cold["train"][item_columns], plain["train"][item_columns])
    pd.testing.assert_frame_equal(cold["valid"], plain["valid"])  # queries read every training row as before
    everyone = compute(GRADED, train, {"valid": valid}, graded, StatisticsSettings(cold_share=1.0))["train"]
    assert (everyone["stat_user_log_rows"] == 0).all() and (everyone["stat_item_log_rows"] > 0).any()
    with pytest.raises(MdrecError, match="--cold-share 1.5: a share of the training rows"):
        compute(GRADED, train, {"valid": valid}, graded, StatisticsSettings(cold_share=1.5))


def test_written_folder_trains(tmp_path, tiny_spec_path, tiny_splits):
    from conftest import tiny_config

    from mdrec.workflows.train import train_run

    out = tmp_path / "with_statistics"
    summary = write_statistics(tiny_spec_path, tmp_path, out, StatisticsSettings())
    assert summary["mode"] == "earlier rows" and summary["inputs"]["train"]["rows"] == 420
    valid, train_rows = pd.read_csv(tiny_splits["valid"]), pd.read_csv(tiny_splits["train"])
    assert summary["cold_share"] == pytest.approx((~valid["user_id"].isin(train_rows["user_id"])).mean())
    spec = load_spec(out / "spec.yaml")
    names = [f.name for f in spec.features]
    assert names[:7] == [f.name for f in load_spec(tiny_spec_path).features]
    assert names[7:] == summary["columns"] and len(summary["columns"]) == 6  # 3 keys; the label is 0/1
    train = pd.read_parquet(out / "train.parquet")
    assert list(train.columns[:10]) == list(pd.read_csv(tiny_splits["train"]).columns)
    assert train["stat_user_log_rows"].iloc[0] == 0.0  # the first event knows nothing yet
    paths = {name: out / f"{name}.parquet" for name in ("train", "valid", "test")}
    metrics = train_run(out / "spec.yaml", tiny_config(paths, epochs=1), tmp_path / "run", log=lambda *_: None)
    overall = {r["domain"]: r for r in metrics["tables"]["test"]}["ALL"]
    assert overall["rows"] == 90 and 0.0 < overall["auc"] <= 1.0

    with pytest.raises(MdrecError, match="already has the column 'stat_user_click_mean'"):
        write_statistics(out / "spec.yaml", out, tmp_path / "again", StatisticsSettings())
    with pytest.raises(MdrecError, match="is the input folder"):
        write_statistics(tiny_spec_path, tmp_path, tmp_path, StatisticsSettings())


def test_cli_errors_are_one_line(tmp_path, tiny_spec_path, capsys):
    from mdrec.cli import main

    assert main(["data", "statistics", "--spec", str(tiny_spec_path), "--data", str(tmp_path),
                 "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert f"{tmp_path}: no train split" in err and "Traceback" not in err
    assert main(["data", "statistics", "--spec", str(tiny_spec_path), "--data", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--folds", "1"]) != 0
    assert "at least 2 folds" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
