"""Paths in the records mdrec writes are absolute or relative to the recording file's folder
(mdrec.records), never to the writer's working directory: prepare.json and an A/B report's
summary.json still resolve, and their consumers work, from another folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from conftest import TINY_SPEC, tiny_frame
from mdrec.data.log import load_log
from mdrec.data.prepare import prepare, read_prepared
from mdrec.records import recorded_path, resolve_recorded
from mdrec.spec import SHIPPED_SPECS as SPECS
from mdrec.spec import load_spec
from test_prepare import douban_source


def test_recorded_path_is_relative_inside_the_record_folder_else_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = Path("out") / "record.json"
    assert recorded_path("out/a/b.parquet", record) == "a/b.parquet"
    assert recorded_path(tmp_path / "out" / "c.txt", record) == "c.txt"
    assert recorded_path("elsewhere/d.yaml", record) == str(tmp_path / "elsewhere" / "d.yaml")
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "b.parquet").write_text("x")
    monkeypatch.chdir(tmp_path / "out" / "a")  # a reader elsewhere
    assert resolve_recorded("a/b.parquet", tmp_path / "out" / "record.json").read_text() == "x"
    assert resolve_recorded(str(tmp_path / "x"), "anything.json") == tmp_path / "x"  # absolute stays
    # an old record's path relative to the working directory still reads while only that exists
    assert resolve_recorded("b.parquet", tmp_path / "out" / "record.json") == Path("b.parquet")


def test_prepared_folder_resolves_from_another_folder_and_after_a_move(tmp_path, monkeypatch):
    source = douban_source(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    prepare("douban-book-music", "../douban", "prepared")  # relative arguments, as on a command line
    raw = json.loads((tmp_path / "work" / "prepared" / "prepare.json").read_text())
    assert Path(raw["feature_spec"]).is_absolute() and raw["feature_spec"] == str(SPECS / "douban-book-music.yaml")
    assert raw["files"]["train"] == "train.parquet" and Path(raw["source"]) == source.resolve()
    assert raw["dataset"] == "douban-book-music"

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    shutil.move(str(tmp_path / "work" / "prepared"), str(tmp_path / "moved"))  # the folder moves as a whole
    record = read_prepared(tmp_path / "moved")
    spec = load_spec(record["feature_spec"])  # the consumer: the recorded spec reads the recorded split
    train = load_log(record["files"]["train"], spec)
    assert len(train) == raw["rows"]["train"] and record["files"]["train"] == tmp_path / "moved" / "train.parquet"
    assert record["source"] == source.resolve()

    # A record from before (feature_spec relative to the checkout) still finds the checkout's spec.
    raw["feature_spec"] = "feature_specs/douban-book-music.yaml"
    (tmp_path / "moved" / "prepare.json").write_text(json.dumps(raw))
    assert read_prepared(tmp_path / "moved")["feature_spec"] == SPECS / "douban-book-music.yaml"


def test_ab_summary_paths_resolve_from_another_folder(tmp_path, monkeypatch):
    from mdrec.workflows.ab import ab_test

    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    log = tiny_frame(300, seed=3)
    log.to_csv(tmp_path / "log.csv", index=False)
    keys = log[["user_id", "item_id", "domain", "ts"]]
    rng = np.random.default_rng(0)
    keys.assign(score=rng.random(len(log))).to_parquet(tmp_path / "a.parquet", index=False)
    keys.assign(score=np.clip(0.3 * log["click"] + 0.7 * rng.random(len(log)), 0, 1)).to_parquet(
        tmp_path / "b.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    ab_test("a.parquet", "b.parquet", "log.csv", spec="tiny.yaml", n_bootstrap=20, out="reports/ab")

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    record = tmp_path / "reports" / "ab" / "summary.json"
    summary = json.loads(record.read_text())
    assert summary["files"] == {"report.md": "report.md", "report.html": "report.html", "summary.json": "summary.json"}
    assert all(resolve_recorded(name, record).is_file() for name in summary["files"].values())
    assert summary["settings"]["data"] == str(tmp_path / "log.csv")
    assert {role: side["path"] for role, side in summary["sides"].items()} == {
        "control": str(tmp_path / "a.parquet"), "treatment": str(tmp_path / "b.parquet")}
    assert all(resolve_recorded(side["path"], record).is_file() for side in summary["sides"].values())
