"""The one "mean ± std" / "model vs baseline" table builder, with numbers worked by hand, and the
tables that go through it (compare, transfer variants, compare-branches)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mdrec.evaluation.tables import EMPTY, mean_std, mean_std_table, seed_stats, spread, versus


def _long(cells: dict) -> pd.DataFrame:
    """{(row, column): [value per seed]} -> the long frame."""
    return pd.DataFrame([(row, column, seed, value) for (row, column), values in cells.items()
                         for seed, value in enumerate(values)], columns=["row", "column", "seed", "value"])


VALUES = _long({("model", "auc"): [0.1, 0.2, 0.3], ("model", "ndcg"): [0.4, np.nan],
                ("baseline", "auc"): [0.1], ("baseline", "ndcg"): [0.0], ("empty", "auc"): [np.nan, np.nan]})


def test_one_cell_is_the_mean_and_the_sample_std_of_its_present_values():
    # mean 0.2; deviations -0.1, 0, 0.1: sum of squares 0.02 / (3 - 1) = 0.01 -> std 0.1
    # (the population std would be sqrt(0.02 / 3) = 0.0816)
    assert mean_std(spread([0.1, 0.2, 0.3])) == "0.2000 ± 0.1000"
    assert mean_std(spread([0.25])) == "0.2500"                      # one value: no spread claimed
    assert mean_std(spread([0.4, np.nan, None])) == "0.4000"         # missing values skipped
    assert spread([np.nan]) == EMPTY and mean_std(EMPTY) == "-"
    assert mean_std(spread([1.0, 2.0]), digits=2) == "1.50 ± 0.71"   # sqrt(0.5) = 0.7071


def test_table_rows_and_columns_in_order_with_a_dash_where_nothing_was_measured():
    table = mean_std_table(VALUES)
    assert list(table.index) == ["model", "baseline", "empty"] and list(table.columns) == ["auc", "ndcg"]
    assert table.loc["model"].tolist() == ["0.2000 ± 0.1000", "0.4000"]
    assert table.loc["baseline"].tolist() == ["0.1000", "0.0000"]
    assert table.loc["empty"].tolist() == ["-", "-"]
    chosen = mean_std_table(VALUES, rows=["baseline", "absent"], columns=["ndcg", "auc", "gauc"])
    assert chosen.loc["baseline"].tolist() == ["0.0000", "0.1000", "-"]
    assert chosen.loc["absent"].tolist() == ["-", "-", "-"]
    assert table.index.name is None and table.columns.name is None


def test_seed_stats_are_the_numbers_behind_the_cells():
    stats = seed_stats(VALUES)
    assert stats.loc[("model", "auc")].tolist() == pytest.approx([0.2, 0.1, 3])
    mean, std, n = stats.loc[("model", "ndcg")]
    assert (mean, n) == (pytest.approx(0.4), 1) and math.isnan(std)
    assert stats.loc[("empty", "auc"), "n"] == 0


def test_versus_the_baseline_row_by_difference_and_by_ratio():
    delta = versus(VALUES, "baseline")
    assert list(delta.index) == ["model", "empty"]                  # the baseline row left out
    assert delta.loc["model", "auc"] == pytest.approx(0.2 - 0.1)
    assert delta.loc["model", "ndcg"] == pytest.approx(0.4 - 0.0)
    assert math.isnan(delta.loc["empty", "auc"])                     # nothing measured: no difference
    ratio = versus(VALUES, "baseline", how="ratio", rows=["model"], columns=["auc", "ndcg"])
    assert ratio.loc["model", "auc"] == pytest.approx(2.0)          # 0.2 / 0.1
    assert math.isnan(ratio.loc["model", "ndcg"])                    # over a baseline of 0


def test_mistakes_are_refused():
    with pytest.raises(ValueError, match=r"seed 0 of \(model, auc\) is given twice"):
        mean_std_table(pd.concat([VALUES, VALUES.iloc[:1]]))
    with pytest.raises(ValueError, match="needs columns"):
        mean_std_table(VALUES.rename(columns={"value": "auc"}))
    with pytest.raises(ValueError, match="no values"):
        versus(VALUES, "no such row")
    with pytest.raises(ValueError, match="'delta' or 'ratio'"):
        versus(VALUES, "baseline", how="share")


def test_the_workflow_tables_follow_the_same_rule():
    from mdrec.workflows.comparison import aggregate_by_model
    from mdrec.workflows.transfer_report import summary

    runs = pd.DataFrame({"model": ["star", "star", "star", "baseline"], "auc": [0.1, 0.2, 0.3, 0.15],
                         "auc[b]": [np.nan, np.nan, np.nan, 0.5]}, index=["s0", "s1", "s2", "user+item mean"])
    compared = aggregate_by_model(runs)
    assert compared.loc["star (n=3)"].tolist() == ["0.2000 ± 0.1000", "-"]
    assert compared.loc["user+item mean (n=1)"].tolist() == ["0.1500", "0.5000"]

    rows = [{"variant": "frozen", "seed": s, "ALL": v, "target history 0": np.nan} for s, v in enumerate((0.1, 0.2, 0.3))]
    rows += [{"variant": "baseline: mean", "seed": 0, "ALL": 0.15}] * 2  # repeated by each variant run: once
    variants = summary(rows)
    assert variants.loc["frozen"].tolist() == ["0.2000 ± 0.1000", "-"]
    assert variants.loc["baseline: mean"].tolist() == ["0.1500", "-"]


def _branches_report() -> dict:
    def cell(values):
        s = spread(values)
        return {"mean": s.mean, "std": s.std, "values": values}

    rows = {"id": {"queries": cell([1234] * 3), "recall@50": cell([0.1, 0.2, 0.3])},
            "content": {"queries": cell([1234] * 3), "recall@50": cell([0.3, 0.4, 0.5])},
            "baseline: popularity per line": {"queries": cell([1234]), "recall@50": cell([0.05])}}
    names = ["cold (0: not in training)", "all warm"]
    return {"family": "retrieval", "main_metric": "recall@50", "branches": ["id", "content"],
            "baseline": "baseline: popularity per line", "seeds": [0, 1, 2],
            "summary": {"warm": rows, f"bucket:{names[1]}": rows},
            "data": {"bucket_names": names, "buckets": {n: {"items": 1500, "test_clicks": 20} for n in names}}}


def test_compare_branches_tables_and_findings():
    from mdrec.workflows.branches_report import bucket_table, findings, summary_table

    report = _branches_report()
    table = summary_table(report, "warm")
    assert list(table.index) == ["id", "content", "baseline: popularity per line"]
    assert table["queries"].tolist() == ["1,234"] * 3                    # a count, not a mean ± std
    assert table["recall@50"].tolist() == ["0.2000 ± 0.1000", "0.4000 ± 0.1000", "0.0500"]
    buckets = bucket_table(report)
    assert list(buckets.columns) == ["items", "test clicks", "id", "content", "baseline: popularity per line"]
    assert buckets.loc["cold (0: not in training)"].tolist() == ["1,500", "20", "-", "-", "-"]
    assert buckets.loc["all warm", "content"] == "0.4000 ± 0.1000"
    # 0.4 - 0.2, with both seed stds
    assert findings(report) == ["warm items (seen in training): content − id = +0.2000 recall@50 "
                                "(seed std 0.1000, 0.1000)"]
