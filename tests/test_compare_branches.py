"""mdrec compare-branches: the cold-item split, the warm/cold/popularity report, and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdrec.cli import main
from mdrec.data.catalogue import Catalogue
from mdrec.data.log import load_log
from mdrec.data.splits import cold_item_split, split_files, time_split
from mdrec.errors import MdrecError
from mdrec.spec import load_spec
from mdrec.workflows.branches import compare_branches, parse_branches
from mdrec.workflows.branches_items import Items, extend_catalogue
from conftest import TINY_SPEC, tiny_frame


def test_cold_item_split_holds_items_out_of_training_entirely():
    rng = np.random.default_rng(0)
    keys = np.array([f"i{k}" for k in rng.integers(0, 50, 1000)], dtype=object)
    base = time_split(np.arange(1000))
    (train, valid, test), cold = cold_item_split(keys, base, 0.2, seed=1)
    assert len(cold) == 10                                              # 20% of 50 items
    assert np.array_equal(np.sort(np.concatenate([train, valid, test])), np.arange(1000))  # nothing lost
    assert not set(keys[train]) & set(cold)                            # no row of a cold item trains
    held = np.flatnonzero(np.isin(keys, cold))
    assert set(held) <= set(valid) | set(test)
    for item in cold:  # each cold item lives in one held-out split with all of its rows
        rows = set(np.flatnonzero(keys == item))
        assert rows <= set(valid) or rows <= set(test)
    warm_rows = np.setdiff1d(np.arange(1000), held)
    assert np.array_equal(np.intersect1d(train, warm_rows), np.intersect1d(base[0], warm_rows))
    again, cold_again = cold_item_split(keys, base, 0.2, seed=1)
    assert np.array_equal(cold, cold_again) and all(np.array_equal(a, b) for a, b in zip(again, (train, valid, test)))
    assert not np.array_equal(cold_item_split(keys, base, 0.2, seed=2)[1], cold)
    with pytest.raises(MdrecError, match="holds out no item"):
        cold_item_split(keys, base, 0.001)


def test_items_buckets_and_extended_catalogue(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    frame = tiny_frame(600)
    frame.to_csv(tmp_path / "log.csv", index=False)
    written = split_files(tiny_spec_path, tmp_path / "log.csv", tmp_path / "data", cold_items=0.2, seed=0)
    cold = (tmp_path / "data" / "cold_items.txt").read_text().split()
    assert written["cold_items"][0] == len(cold) == 6
    train, test = (load_log(written[n][1], spec) for n in ("train", "test"))
    items = Items.of(test, train, spec, buckets=3)
    assert items.bucket_names[0].startswith("cold") and len(items.bucket_names) >= 3
    assert ((items.bucket == 0) == ~items.warm).all()
    assert set(items.keys[~items.warm]) <= set(cold)
    catalogue = Catalogue.from_log(train, spec, sorted(set(frame["domain"])))
    extended = extend_catalogue(catalogue, [test], spec)
    new = extended.keys[len(catalogue):]
    assert set(new) == set(items.keys[~items.warm]) and extended.positives[:, len(catalogue):].sum() == 0
    assert extended.membership[:, len(catalogue):].any(0).all()       # every new item is in some line
    assert len(extended.inputs(spec)["title"]) == len(extended)


def test_parse_branches():
    branches = parse_branches("id,content:text_encoder=transformer:frozen_text=lsa,hybrid:hybrid_combine=gate")
    assert [b.name for b in branches] == ["id", "content", "hybrid"]
    assert branches[1].params == {"text_encoder": "transformer", "frozen_text": "lsa"}
    assert branches[1].folder == "content-text_encoder-transformer-frozen_text-lsa"
    with pytest.raises(MdrecError, match="unknown item encoder 'ids'"):
        parse_branches("ids,content")
    with pytest.raises(MdrecError, match="key=value"):
        parse_branches("content:transformer")


def test_compare_branches_reports_warm_cold_and_popularity(tmp_path, tiny_spec_path, capsys, monkeypatch):
    import mdrec.workflows.train as train_workflow

    fits = []
    fit = train_workflow.fit_baselines
    monkeypatch.setattr(train_workflow, "fit_baselines", lambda *a, **kw: fits.append(1) or fit(*a, **kw))
    tiny_frame(600).to_csv(tmp_path / "log.csv", index=False)
    out = tmp_path / "report"
    code = main(["compare-branches", "--spec", str(tiny_spec_path), "--data", str(tmp_path / "log.csv"),
                 "--cold-items", "0.2", "--model", "two_tower", "--encoders", "id,content", "--seeds", "0",
                 "--epochs", "1", "--batch-size", "64", "--param", "hidden=[8]", "--param", "embedding_dim=8",
                 "--buckets", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "cold items (absent from training)" in printed and "baseline: popularity per line" in printed
    assert f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'popularity.png'}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["files"] == {"report.md": "report.md", "report.json": "report.json", "plot": "popularity.png"}
    assert Path(report["command"]["spec"]).is_absolute() and Path(report["command"]["files"]["test"]).is_absolute()
    assert (out / "popularity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    for title in ("all items", "warm items", "cold items", "by item popularity"):
        assert title in markdown
    data = report["data"]
    assert data["items_held_out"] == 6 and data["test_items"]["cold"] > 0
    for subset in ("all", "warm", "cold"):
        rows = report["summary"][subset]
        assert set(rows) == {"id", "content", "baseline: popularity per line"}
        assert rows["id"]["queries"]["values"] == rows["content"]["queries"]["values"]  # the same queries
    # Every cold item's rows map to the OOV bucket of the id table, and they are counted.
    test = pd.read_parquet(out / "data" / "test.parquet")
    train = pd.read_parquet(out / "data" / "train.parquet")
    assert report["oov"]["item_id"]["oov"] == int((~test["item_id"].isin(train["item_id"])).sum()) > 0
    # The id branch cannot rank an item it never saw above popular ones; content ranks it by content.
    cold = report["summary"]["cold"]
    assert cold["baseline: popularity per line"]["recall@10"]["mean"] == pytest.approx(0.0)
    assert data["catalogue"]["added_from_valid_and_test"] == 6
    # The runs share the split: the first fits the sanity rows (searching their settings), the next
    # copies their settings and tables instead of fitting and ranking them again.
    runs = [json.loads(path.read_text())["baselines"] for path in sorted((out / "runs").glob("*/metrics.json"))]
    assert len(runs) == 2 and all(r["validation_grid"] for r in runs[0].values())
    assert all(set(r["tables"]) == {"valid", "test"} for r in runs[0].values() if not r.get("skipped"))
    assert runs[1] == runs[0] and fits == [1]
    # Runs resume: the same command again retrains nothing and gives the same report.
    first = report["summary"]
    compare_branches(tiny_spec_path, out, model="two_tower", data=tmp_path / "log.csv", cold_items=0.2,
                     encoders="id,content", seeds=[0], epochs=1, batch_size=64,
                     hyperparameters={"hidden": [8], "embedding_dim": 8}, buckets=2, log=lambda m: None)
    assert json.loads((out / "report.json").read_text())["summary"] == first


def test_compare_branches_mistakes_are_one_clear_error(tmp_path, tiny_spec_path, capsys):
    tiny_frame(200).to_csv(tmp_path / "log.csv", index=False)
    base = ["compare-branches", "--spec", str(tiny_spec_path), "--out", str(tmp_path / "r")]
    cases = [
        (["--model", "deepfm", "--data", str(tmp_path / "log.csv")], "unknown --model 'deepfm'"),
        (["--data", str(tmp_path / "log.csv"), "--train", "t.csv"], "either --data"),
        (["--train", "a.csv", "--valid", "b.csv"], "needs --train, --valid and --test"),
        (["--train", "a.csv", "--valid", "b.csv", "--test", "c.csv", "--cold-items", "0.1"], "--cold-items splits"),
        (["--data", str(tmp_path / "log.csv"), "--encoders", "id,contnet"], "unknown item encoder 'contnet'"),
        (["--data", str(tmp_path / "log.csv"), "--param", "item_encoder=id"], "choose them with --encoders"),
        (["--data", str(tmp_path / "log.csv"), "--seeds", "0,x"], "--seeds"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("mdrec: error:") and message in err and "Traceback" not in err, (extra, err)
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(line for line in TINY_SPEC.splitlines() if "role: item," not in line))
    with pytest.raises(MdrecError, match="no item content .*role item"):
        compare_branches(bare, tmp_path / "r", data=tmp_path / "log.csv")
