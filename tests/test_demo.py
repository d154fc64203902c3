"""The demo's path end to end (small): the shipped synthetic spec fits the generator's log, the
table covers every business line, and the run folder holds what a resume or export needs."""
from __future__ import annotations

import json

from mdrec.demo import run_demo


def test_quick_demo(tmp_path):
    lines = []
    result = run_demo(tmp_path / "demo", quick=True, log=lines.append)
    table = result["test_table"]
    assert list(table.index) == ["grocery", "live", "main", "mini", "ALL"]
    assert (table["bayes_auc"] > 0.6).all()
    assert table.loc["ALL", "rows"] > 0 and 0 < table.loc["ALL", "pred_ctr"] < 1
    comparison = result["comparison"]
    assert list(comparison["model"]) == ["star", "shared_bottom", "baseline", "baseline", "bayes"]
    assert list(comparison.index[2:4]) == ["baseline: user+item mean (smoothed)",
                                           "baseline: first-order logistic (user, item, line)"]
    assert {"auc", "gauc", "logloss", "auc[grocery]", "calib[grocery]"} <= set(comparison.columns)
    run = tmp_path / "demo" / "star"
    for name in ("config.json", "spec.yaml", "transform.json", "metrics.json", "history.json"):
        assert (run / name).is_file(), name
    assert (run / "best").is_dir() and (run / "checkpoints" / "checkpoint").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["oov"]["test"]["user_id"]["oov"] > 0          # cold users are counted, not dropped
    assert any("compare on the test split" in line for line in lines)
    # Retrieval beside popularity, its index report, and the TF Serving exports.
    assert list(result["retrieval"].index) == ["two_tower", "baseline: popularity per line",
                                               "baseline: ItemKNN (all lines)", "baseline: ItemKNN (per line)",
                                               "baseline: EASE (all lines)", "baseline: EASE (per line)"]
    assert 0 <= result["retrieval"].loc["two_tower", "recall@50"] <= 1
    measured = result["index"]["measured"]
    assert set(measured) == {"scann", "brute_force"} and measured["brute_force"]["recall_at_k"] == 1.0
    for name, version in result["exports"].items():
        assert (version / "saved_model.pb").is_file() and version.name == "1", name
    assert (tmp_path / "demo" / "export" / "models.config").is_file()
    # The demo ends with the A/B of STAR against shared-bottom: a verdict per slice and a report.
    verdict = result["ab"].verdict
    assert len(verdict) > 0 and (tmp_path / "demo" / "ab" / "report.html").is_file()
    # Pretraining: the encoder's next-click head on the big line's test period beside most popular.
    pretraining = result["pretraining"]
    assert list(pretraining.index) == ["autoregressive head (next item)", "user-vector kNN",
                                       "baseline: user kNN on item sets", "most popular"]
    assert ((pretraining[["hr@10", "ndcg@10"]] >= 0) & (pretraining[["hr@10", "ndcg@10"]] <= 1)).all().all()
    assert any("x most popular's" in line for line in lines)
    # Transfer: every variant scored on the small line, with the sanity row and the history slices.
    transfer = result["transfer"]
    assert list(transfer.index) == ["no transfer", "baseline: user+item mean (smoothed)",
                                    "baseline: first-order logistic (user, item, line)", "frozen",
                                    "finetune"]  # the quick run leaves the adapter out
    assert {"ALL", "target history 0", "with source history"} <= set(transfer.columns)
    # Cold start: the small line's cold and warm test users, every method of the table, the
    # transfer rows reading the big line's clicks.
    cold_start = result["cold_start"]
    assert set(cold_start.index.get_level_values("users")) == {"cold", "warm"}
    assert {"popularity (target line)", "baseline: ItemKNN (all lines)", "EMCDR (PureSVD + mapping)"} <= set(
        cold_start.index.get_level_values("method"))
    assert ((cold_start["recall@10"] >= 0) & (cold_start["recall@10"] <= 1)).all()
    assert any("cold users, NDCG@10 over" in line for line in lines)
    # The generator's own ranking bounds the table from above: the gap transfer is measured on.
    ceiling = cold_start.loc[("click-model ceiling (synthetic ground truth)", "cold"), "ndcg@10"]
    assert ceiling > cold_start.loc[("popularity (target line)", "cold"), "ndcg@10"]
    assert any("share of the gap from popularity to the click-model ceiling" in line for line in lines)
    # ID vs content: warm and cold test items scored by each item encoder beside popularity.
    branches = result["branches"]
    for subset in ("warm", "cold"):
        assert list(branches[subset].index) == ["id", "content", "hybrid", "baseline: popularity per line"], subset
    # Scale out: the same STAR trained by a local parameter-server cluster from TFRecord shards, its
    # user_id table hashed and split over both servers.
    cluster = result["scale_out"]["metrics"]
    assert cluster["strategy"]["cluster"] == {"chief": 1, "worker": 2, "ps": 2}
    assert cluster["strategy"]["sharded_tables"]["user_id_embedding"]["shards"] == 2
    assert cluster["hashing"]["user_id"]["buckets"] == 200_000
    test = {row["domain"]: row for row in cluster["tables"]["test"]}
    assert 0.5 < test["ALL"]["auc"] <= 1
    # Lifelong: three tasks on one encoder; Conure forgets nothing, the table has its controls.
    lifelong = result["lifelong"]
    assert list(dict.fromkeys(lifelong.index)) == ["1 next_item", "2 mini", "3 age"]
    assert set(lifelong["metric"]) == {"recall@10", "accuracy", "macro_f1"}
    assert (lifelong["Conure Δ"] == 0.0).all()
    for column in ("seq-FT after all", "one model/task", "adapters", "popularity", "majority class"):
        assert column in lifelong.columns
    assert any("Conure after all" in line for line in lines)
