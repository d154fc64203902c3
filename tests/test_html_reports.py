"""HTML reports beside the markdown: ``mdrec compare --report`` and the transfer reports (one run by
history slice; variants over seeds). Pages must parse, embed real PNGs, carry the numbers the
library computed, and be written as a whole (never over someone else's files)."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_SPEC, tiny_config, write_tiny_splits
from mdrec.cli import main
from mdrec.errors import MdrecError

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class _Page(HTMLParser):
    """Collects <img> attributes, <table> count and <h2> texts; checks every element is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables = 0
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        self.tables += tag == "table"
        self._in_h2 = tag == "h2"
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)


def parse_page(path: Path) -> _Page:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.open, (page.errors, page.open)
    return page


def png_images(page: _Page) -> list[bytes]:
    """Every <img> of the page decoded; each must be an inline PNG, not a file link."""
    out = []
    for image in page.images:
        head, _, payload = image["src"].partition(",")
        assert head == "data:image/png;base64"
        data = base64.b64decode(payload, validate=True)
        assert data.startswith(PNG) and len(data) > 2000  # a drawn plot, not an empty canvas
        out.append(data)
    return out


def markdown_table(text: str, heading: str) -> pd.DataFrame:
    """The table under ``## heading`` of a report.md, cells as strings, first column as the index."""
    block = text.split(f"## {heading}\n", 1)[1].strip().split("\n\n", 1)[0]  # up to the next blank line
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in block.splitlines()]
    header, body = rows[0], rows[2:]
    return pd.DataFrame([r[1:] for r in body], index=[r[0] for r in body], columns=header[1:])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------
# mdrec compare --report
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three 1-epoch runs on the tiny log: shared_bottom with seeds 0 and 1, star with seed 0."""
    from mdrec.workflows.train import train_run

    folder = tmp_path_factory.mktemp("compare")
    (folder / "tiny.yaml").write_text(TINY_SPEC)
    paths = write_tiny_splits(folder)
    out = []
    for model, seed in (("shared_bottom", 0), ("shared_bottom", 1), ("star", 0)):
        out.append(folder / f"{model}-{seed}")
        train_run(folder / "tiny.yaml", tiny_config(paths, model=model, seed=seed, epochs=1), out[-1],
                  log=lambda *_: None)
    return {"runs": out, "paths": paths}


def test_compare_report_holds_the_tables_and_one_plot_per_line(runs, tmp_path, capsys):
    from mdrec.workflows.compare import run_comparison

    report, csv = tmp_path / "reports" / "cmp", tmp_path / "table.csv"
    test = str(runs["paths"]["test"])
    capsys.readouterr()
    assert main(["compare", "--runs", *map(str, runs["runs"]), "--data", test, "--report", str(report),
                 "--out", str(csv)]) == 0
    assert f"report: {report / 'report.md'}" in capsys.readouterr().out
    assert _files(report) == ["report.html", "report.md", "table.csv"]
    assert all((report / name).stat().st_size > 0 for name in _files(report))
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    comparison = run_comparison(runs["runs"], test)
    table = comparison.table
    lines = ["ALL"] + [c[4:-1] for c in table.columns if c.startswith("auc[")]
    assert lines == ["ALL", "a", "b", "c"]
    # report.md: the very numbers compare_runs computes, row by row
    written = markdown_table((report / "report.md").read_text(), "Runs and sanity rows")
    assert list(written.index) == list(table.index) and list(written.columns) == list(table.columns)
    for column in table.columns.drop("model"):
        assert list(written[column]) == [f"{v:.4f}" for v in table[column]], column
    spread = markdown_table((report / "report.md").read_text(), "Mean ± std over the runs of each model")
    sb = table.loc[["shared_bottom-0", "shared_bottom-1"], "auc"]
    assert spread.loc["shared_bottom (n=2)", "auc"] == f"{sb.mean():.4f} ± {sb.std(ddof=1):.4f}"
    assert spread.loc["star (n=1)", "auc"] == f"{table.loc['star-0', 'auc']:.4f}"
    # each sanity row is its own scorer, not two seeds of one "baseline" model
    assert not any(i.startswith("baseline (n=") for i in spread.index)
    # table.csv is the --out table
    assert (report / "table.csv").read_text() == csv.read_text()
    np.testing.assert_allclose(pd.read_csv(report / "table.csv", index_col="run")["auc"], table["auc"])

    page = parse_page(report / "report.html")
    assert page.tables == 2
    assert len(png_images(page)) == 1 + len(lines)  # AUC per line, then a reliability diagram per line
    alts = [image["alt"] for image in page.images]
    assert alts[0].startswith("AUC per line") and alts[1:] == [f"Reliability diagram: {line}" for line in lines]
    html = (report / "report.html").read_text()
    assert f"{table.loc['star-0', 'auc']:.4f}" in html

    # the diagrams' points: every run, every line, mean predicted and observed CTR within [0, 1]
    points = comparison.reliability
    assert set(points["run"]) == {"shared_bottom-0", "shared_bottom-1", "star-0"}
    assert points.groupby("run")["line"].unique().map(list).tolist() == [lines] * 3
    assert points[["predicted", "observed"]].stack().between(0, 1).all()
    one = points[(points["run"] == "star-0") & (points["line"] == "ALL")]
    assert 1 < len(one) <= 10 and one["predicted"].is_monotonic_increasing


def test_compare_refuses_a_report_folder_with_other_files_before_evaluating(tmp_path, capsys, monkeypatch):
    import mdrec.workflows.evaluate as workflow

    def never(*_args, **_kwargs):
        raise AssertionError("evaluated a run before checking the report folder")

    monkeypatch.setattr(workflow, "evaluate_run", never)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "notes.txt").write_text("mine")
    code = main(["compare", "--runs", str(tmp_path / "any-run"), "--data", str(tmp_path / "test.csv"),
                 "--report", str(mixed)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"mdrec: error: {mixed}: holds files that are not a compare report (notes.txt); the report folder is " \
           "replaced as a whole — pass a folder of its own" in err
    assert _files(mixed) == ["notes.txt"]


def _comparison():
    """A hand-made Comparison: two seeds of one model and a sanity row, lines a and b."""
    from mdrec.workflows.comparison import Comparison

    table = pd.DataFrame({"model": ["star", "star", "baseline"], "auc": [0.70, 0.72, 0.65], "gauc": [0.6, 0.62, 0.55],
                          "logloss": [0.5, 0.49, 0.52], "auc[a]": [0.71, 0.73, 0.66], "auc[b]": [0.69, 0.70, 0.64],
                          "calib[a]": [1.0, 1.1, 0.9], "calib[b]": [0.95, 1.05, 1.0]},
                         index=pd.Index(["star-0", "star-1", "baseline: mean"], name="run"))
    bins = np.linspace(0.05, 0.5, 5)
    reliability = pd.DataFrame([{"run": run, "model": "star", "line": line, "predicted": p, "observed": p * 1.1}
                                for run in ("star-0", "star-1") for line in ("ALL", "a", "b") for p in bins])
    return Comparison(table, reliability, "test.parquet")


def test_a_compare_report_is_replaced_whole_and_kept_when_writing_fails(tmp_path, monkeypatch):
    from mdrec.workflows import compare_report

    out = tmp_path / "report"
    compare_report.write_compare_report(_comparison(), out)
    before = {name: (out / name).read_bytes() for name in _files(out)}
    assert len(png_images(parse_page(out / "report.html"))) == 1 + 3

    def broken(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compare_report, "_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        compare_report.write_compare_report(_comparison(), out)
    assert {name: (out / name).read_bytes() for name in _files(out)} == before  # the old report, untouched
    assert _files(tmp_path) == ["report"]  # and no half-written sibling


# --------------------------------------------------------------------------------------------
# transfer: one run by history slice, and variants over seeds
# --------------------------------------------------------------------------------------------
def test_transfer_ctr_run_writes_a_report_of_auc_by_history_slice(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    paths = write_tiny_splits(tmp_path)
    assert main(["pretrain", "--spec", str(spec), "--data", str(paths["train"]), "--objective", "mlm", "--dim", "8",
                 "--layers", "1", "--heads", "1", "--max-length", "5", "--epochs", "1", "--batch-size", "16", "--repeats", "1",
                 "--out", str(tmp_path / "pretrained")]) == 0
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["transfer", "--from", str(tmp_path / "pretrained"), "--spec", str(spec), "--task", "ctr",
                 "--mode", "adapter", "--train", str(paths["train"]), "--valid", str(paths["valid"]),
                 "--test", str(paths["test"]), "--epochs", "1", "--batch-size", "64", "--param", "hidden=[8]",
                 "--out", str(run)]) == 0
    report = run / "report"
    assert f"report: {report / 'report.md'}, {report / 'report.html'}" in capsys.readouterr().out
    assert _files(report) == ["report.html", "report.md"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["report"] == {"report.md": "report/report.md", "report.html": "report/report.html"}

    slices = pd.DataFrame(metrics["slices"]["test"]).set_index("slice")
    written = markdown_table((report / "report.md").read_text(), "Test AUC by slice")
    scorers = list(dict.fromkeys(slices["model"]))
    assert scorers[0] == "model" and len(scorers) == 3  # the model, then the two sanity rows
    assert list(written.columns) == ["rows", *scorers]
    assert list(written.index) == list(dict.fromkeys(slices.index))
    assert {"ALL", "with source history"} <= set(written.index)
    assert any(name.startswith("target history") for name in written.index)
    for scorer in scorers:
        part = slices[slices["model"] == scorer]
        expected = ["-" if np.isnan(v) else f"{v:.4f}" for v in part["auc"].reindex(written.index)]
        assert list(written[scorer]) == expected, scorer
    assert list(written["rows"]) == [str(n) for n in slices[slices["model"] == "model"]["rows"]]

    page = parse_page(report / "report.html")
    assert len(png_images(page)) == 1 and page.tables == 2
    assert page.images[0]["alt"] == "Test AUC by slice"


def _variant_rows() -> list[dict]:
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for variant, base in (("no transfer", 0.60), ("frozen", 0.66), ("baseline: mean", 0.58)):
            rows.append({"variant": variant, "seed": seed, "ALL": base + shift, "target history 0": base - 0.05 + shift,
                         "target history 1-3": base + shift, "target history 4+": base + 0.04 + shift,
                         "rows": {"ALL": 90, "target history 0": 20, "target history 1-3": 30, "target history 4+": 40}})
    return rows


def test_variants_report_shows_every_seed_and_the_mean_and_std(tmp_path):
    from mdrec.workflows.transfer_report import write_variants_report
    from mdrec.workflows.transfer_report import summary

    rows = _variant_rows()
    out = tmp_path / "transfer_report"
    paths = write_variants_report(rows + rows[-1:], out, title="tiny: AUC by history")  # a repeated row counts once
    assert set(paths) == {"report.md", "report.html"} and _files(out) == ["report.html", "report.md"]
    written = markdown_table(paths["report.md"].read_text(), "Test AUC by slice, mean ± std over seeds")
    assert written.loc["frozen", "ALL"] == "0.6700 ± 0.0141"
    assert written.equals(summary(rows).astype(str).rename_axis(None).rename_axis(None, axis=1))
    page = parse_page(paths["report.html"])
    assert len(png_images(page)) == 1 and page.tables == 1

    (out / "notes.txt").write_text("mine")
    with pytest.raises(MdrecError, match=r"holds files that are not a transfer report \(notes.txt\)"):
        write_variants_report(rows, out, title="again")
    assert _files(out) == ["notes.txt", "report.html", "report.md"]
