"""Tests for mdrec.evaluation.metrics (numpy/pandas/sklearn only, fast)."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mdrec.evaluation.metrics import (
    GroupAUC,
    auc,
    calibration,
    ctr_report,
    expected_calibration_error,
    format_table,
    gauc,
    logloss,
    table_to_markdown,
)


def _brute_gauc(labels, scores, groups):
    """Reference: per-group sklearn loop, weighted by group size; returns (value, used, excluded)."""
    df = pd.DataFrame({"y": labels, "s": scores, "g": groups})
    num = den = 0.0
    used = excluded = 0
    for _, sub in df.groupby("g"):
        if sub["y"].nunique() < 2:
            excluded += 1
            continue
        used += 1
        num += len(sub) * roc_auc_score(sub["y"], sub["s"])
        den += len(sub)
    return (num / den if den else math.nan), used, excluded, int(den)


# ---------------------------------------------------------------- AUC / logloss / calibration
def test_auc_matches_sklearn_and_accepts_input_types():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500), 2)  # rounding creates ties
    expected = roc_auc_score(y, s)
    assert auc(y, s) == pytest.approx(expected, abs=1e-12)
    assert auc(list(y), list(s)) == pytest.approx(expected, abs=1e-12)
    assert auc(pd.Series(y, index=np.arange(500) + 7), pd.Series(s)) == pytest.approx(expected)
    assert auc(y, s.reshape(-1, 1)) == pytest.approx(expected)  # Keras predict shape


def test_auc_nan_for_one_class_and_empty():
    assert math.isnan(auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(auc([0, 0], [0.1, 0.5]))
    assert math.isnan(auc([], []))


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"3.*2"):
        auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"4.*3"):
        gauc([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], ["a", "b", "c"])


def test_bad_labels_and_probabilities_raise():
    with pytest.raises(ValueError, match="0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logloss([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration([0, 1], [-0.1, 0.5])
    with pytest.raises(ValueError, match="finite"):
        auc([0, 1], [0.1, np.nan])


def test_logloss_matches_sklearn_and_clips():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = rng.uniform(0.01, 0.99, 300)
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-10)
    # a confident mistake stays finite thanks to clipping at eps
    value = logloss([1, 0], [0.0, 1.0], eps=1e-7)
    assert np.isfinite(value)
    assert value == pytest.approx(-math.log(1e-7), rel=1e-6)
    # one-class slice is still scored
    assert logloss([1, 1], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_calibration_of_scaled_predictor_is_two():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 0.4, 200_000)
    y = (rng.random(p.size) < p).astype(int)
    assert calibration(y, p) == pytest.approx(1.0, abs=0.02)
    assert calibration(y, p * 2) == pytest.approx(2.0, abs=0.04)
    assert math.isnan(calibration([0, 0, 0], [0.1, 0.2, 0.3]))


def test_ece_zero_when_calibrated_per_bin_positive_otherwise():
    # bin-constant predictions whose value equals the bin's observed rate
    y = [1, 0, 0, 0] + [1, 1, 1, 0] + [1]
    p = [0.25] * 4 + [0.75] * 4 + [1.0]  # p == 1 lands in the last bin
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    shifted = [0.35] * 4 + [0.75] * 4 + [1.0]
    # only the first bin (4/9 of rows) is off by 0.10
    assert expected_calibration_error(y, shifted) == pytest.approx(4 / 9 * 0.10)
    assert expected_calibration_error(y, [0.5] * 9, bins=5) > 0


# ---------------------------------------------------------------- GAUC
def test_gauc_matches_bruteforce_with_ties_and_single_class_users():
    rng = np.random.default_rng(3)
    n, users = 4000, 300
    groups = rng.integers(0, users, n)
    # per-user base rates, some 0 or 1 so single-class users exist
    rate = rng.choice([0.0, 0.2, 0.5, 1.0], size=users, p=[0.1, 0.5, 0.3, 0.1])
    y = (rng.random(n) < rate[groups]).astype(int)
    s = np.round(rng.random(n) + 0.3 * y, 1)  # coarse scores -> many ties within users
    ref, used, excluded, impressions = _brute_gauc(y, s, groups)
    assert excluded > 0
    got = gauc(y, s, groups)
    assert isinstance(got, GroupAUC)
    assert got.value == pytest.approx(ref, abs=1e-12)
    assert (got.groups_used, got.groups_excluded, got.impressions_used) == (
        used, excluded, impressions)
    # string ids and a shuffled row order give the same answer
    perm = rng.permutation(n)
    again = gauc(pd.Series(y[perm]), s[perm], pd.Series([f"u{g}" for g in groups[perm]]))
    assert again.value == pytest.approx(got.value, abs=1e-12)  # sum order may differ
    assert again.groups_used == got.groups_used
    assert again.groups_excluded == got.groups_excluded


def test_gauc_perfect_per_user_ranker_beats_global_auc():
    # user a: high base rate and high scores; user b: low base rate and low scores.
    # within each user the ranking is perfect, but a's negatives outrank b's positives.
    y = [0, 0, 1, 1, 1, 1] + [0, 0, 0, 0, 1]
    s = [0.6, 0.65, 0.7, 0.8, 0.9, 0.95] + [0.05, 0.1, 0.15, 0.2, 0.3]
    g = ["a"] * 6 + ["b"] * 5
    assert auc(y, s) < 1.0
    result = gauc(y, s, g)
    assert result.value == pytest.approx(1.0)
    assert result.groups_used == 2 and result.impressions_used == 11


def test_gauc_all_single_class_is_nan_and_counted():
    result = gauc([1, 1, 0], [0.2, 0.3, 0.4], [1, 1, 2])
    assert math.isnan(result.value)
    assert (result.groups_used, result.groups_excluded, result.impressions_used) == (0, 2, 0)


def test_gauc_large_input_runs():
    rng = np.random.default_rng(4)
    n = 1_000_000
    groups = rng.integers(0, 100_000, n)
    s = rng.random(n).astype(np.float32)
    y = (rng.random(n) < 0.1 + 0.3 * s).astype(np.int8)
    result = gauc(y, s, groups)
    assert 0.5 < result.value < 1.0
    assert result.groups_used + result.groups_excluded == np.unique(groups).size


# ---------------------------------------------------------------- report and rendering
@pytest.fixture
def frame():
    rng = np.random.default_rng(5)
    n = 3000
    dom = rng.choice(["search", "feed", "ads"], n)
    user = rng.integers(0, 200, n)
    p = rng.uniform(0.01, 0.6, n)
    y = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"click": y, "pctr": p, "dom": dom, "uid": user})


def test_ctr_report_rows_sum_to_all_and_match_sklearn(frame):
    t = ctr_report(frame, label="click", score="pctr", domain="dom", user="uid")
    assert t.index.name == "domain"
    assert list(t.index) == ["ads", "feed", "search", "ALL"]
    assert list(t.columns) == ["rows", "positives", "ctr", "pred_ctr", "calibration", "auc",
                               "gauc", "gauc_users", "logloss", "ece"]
    per_domain = t.drop(index="ALL")
    assert per_domain["rows"].sum() == t.loc["ALL", "rows"] == len(frame)
    assert per_domain["positives"].sum() == t.loc["ALL", "positives"] == frame["click"].sum()
    for name, sub in frame.groupby("dom"):
        assert t.loc[name, "auc"] == pytest.approx(roc_auc_score(sub["click"], sub["pctr"]))
        assert t.loc[name, "gauc"] == pytest.approx(
            _brute_gauc(sub["click"], sub["pctr"], sub["uid"])[0])
        assert t.loc[name, "ctr"] == pytest.approx(sub["click"].mean())
    assert t.loc["ALL", "logloss"] == pytest.approx(log_loss(frame["click"], frame["pctr"]))
    assert t["rows"].dtype == np.int64 and t["gauc_users"].dtype == np.int64


def test_ctr_report_without_user_or_domain_and_one_class_domain(frame):
    frame = frame.copy()
    frame.loc[frame["dom"] == "ads", "click"] = 0  # one-class domain must not raise
    t = ctr_report(frame, label="click", score="pctr", domain="dom")
    assert "gauc" not in t.columns and "gauc_users" not in t.columns
    assert math.isnan(t.loc["ads", "auc"]) and math.isnan(t.loc["ads", "calibration"])
    assert t.loc["ads", "positives"] == 0
    only_all = ctr_report(frame, label="click", score="pctr")
    assert list(only_all.index) == ["ALL"]
    with pytest.raises(ValueError, match="nope"):
        ctr_report(frame, label="click", score="nope")


def test_format_table_nan_dash_ints_and_alignment():
    table = pd.DataFrame(
        {"rows": [10, 12345], "auc": [0.5, float("nan")], "name": ["x", "longer"]},
        index=pd.Index(["a", "ALL"], name="domain"),
    )
    text = format_table(table)
    lines = text.splitlines()
    assert len(lines) == 4
    header, rule, first, last = lines
    assert header.split() == ["domain", "rows", "auc", "name"]
    assert set(rule) <= {"-", " "}
    assert last.split() == ["ALL", "12345", "-", "longer"]
    assert first.split() == ["a", "10", "0.5000", "x"]
    assert "12345.0" not in text and "nan" not in text
    # numeric columns are right-aligned: every row ends each cell at the header's end column
    for col in ("rows", "auc"):
        end = header.index(col) + len(col)
        for line in (first, last):
            assert line[end - 1] != " " and line[end] == " "
    # text column is left-aligned: starts at the header's start column
    start = header.index("name")
    assert first[start] == "x" and last[start] == "l"


def test_report_renders_in_both_formats(frame):
    t = ctr_report(frame, label="click", score="pctr", domain="dom", user="uid")
    text = format_table(t, floatfmt=".3f")
    assert text.splitlines()[0].split()[0] == "domain"
    assert f"{t.loc['ALL', 'auc']:.3f}" in text
    md = table_to_markdown(t)
    lines = md.splitlines()
    assert lines[0].startswith("| domain | rows |")
    assert lines[1].startswith("| :--- | ---: |")
    assert len(lines) == 2 + len(t)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    nan_md = table_to_markdown(pd.DataFrame({"v": [float("nan")]}))
    assert nan_md.splitlines()[2] == "| 0 | - |"
