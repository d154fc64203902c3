"""compare-branches' report: the runs' metrics aggregated over seeds, the tables, report.md,
report.json and popularity.png.

The summary (report.json's ``summary``) is subset -> row label (a branch, or the baseline) ->
metric -> {"mean", "std", "values"}: every seed's value, and their mean and sample std by the rule
of :mod:`mdrec.evaluation.tables` (std None for one seed). The tables are rebuilt from the values
with :func:`mdrec.evaluation.tables.mean_std_table`, so a report.json read back gives the same text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypedDict

import numpy as np
import pandas as pd

from mdrec.evaluation.tables import mean_std_table, spread, versus
from mdrec.fileio import atomic_file, atomic_write_json, atomic_write_text
from mdrec.records import recorded_path

SUBSETS = {"all": "all items", "warm": "warm items (seen in training)",
           "cold": "cold items (absent from training)"}
RETRIEVAL_METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100")
CTR_METRICS = ("auc", "gauc", "logloss")
MAIN_METRIC = {"retrieval": "recall@50", "ctr": "auc"}
COUNTS = ("queries", "rows")  # the same on every seed (the split is fixed): shown as counts


# What compare_branches returns and writes to report.json: assemble's record, then "command" and
# "wall_seconds" (compare_branches) and "files" (write_report). Row labels: the branches' labels, then
# the baseline's.
class BranchesReport(TypedDict, total=False):
    family: str                             # the backbone's family: "retrieval" or "ctr"
    model: str                              # the backbone trained per branch, e.g. "two_tower" or "star"
    main_metric: str                        # the family's MAIN_METRIC ("recall@50", "auc"): per line, by bucket
    baseline: str                           # the baseline's row label
    branches: list[str]                     # the labels in --encoders order, e.g. "content text_encoder=transformer"
    seeds: list[int]
    data: dict[str, Any]                    # the split's facts: source (split, split_seed, cold_item_share,
                                            # items_held_out with --data), rows, test_items, test_rows, test_clicks
                                            # (warm/cold), buckets, bucket_names; retrieval: catalogue
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]]  # subset ("all", "warm", "cold", "bucket:<name>")
                                            # -> row label -> metric -> {"mean", "std" (None for one seed), "values"}
    runs: list[dict[str, Any]]              # one per (branch, seed): branch, seed, run, train_seconds, best_epoch,
                                            # epochs_run, oov
    oov: dict[str, dict[str, int]]          # the first run's test split: feature -> values, oov (and hashed)
    oov_by_branch: dict[str, dict[str, dict[str, int]]]  # branch label -> the same, from its last seed's run
    notes: list[str]                        # how to read the report (report.md's last section)
    command: dict[str, Any]                 # the call: spec, model, files (train/valid/test), encoders, seeds, epochs,
                                            # batch_size, learning_rate, patience, hyperparameters, buckets
    wall_seconds: float                     # from splitting to scoring, to 0.1 s
    files: dict[str, str]                   # "report.md", "report.json", "plot" -> path relative to report.json


# ---- aggregation ------------------------------------------------------------------------------------

def _metric_row(table: pd.DataFrame, family: str) -> dict:
    """Overall metrics, then the main metric per line, from a per-domain table."""
    metrics = RETRIEVAL_METRICS if family == "retrieval" else CTR_METRICS
    main = MAIN_METRIC[family]
    row = {m: float(table.loc["ALL", m]) for m in metrics if m in table.columns}
    row.update({f"{main}[{d}]": float(table.loc[d, main]) for d in table.index if d != "ALL"})
    count = "queries" if family == "retrieval" else "rows"
    row = {count: int(table.loc["ALL", count]), **row}
    return row


def assemble(family: str, model: str, labels: list[str], seeds: list[int], per_run: list[dict],
             facts: dict) -> BranchesReport:
    """The report of the finished comparison (what report.json holds, less command and timing).

    per_run: one entry per (branch, seed) run with "branch" (its label), "seed", "oov" and
    "tables": {subset: {"model": per-line table, "baseline": per-line table}}; labels: the
    branches' labels in order. The baseline does not depend on the seed: the first run's counts.
    """
    subsets = ["all", "warm", "cold"] + [f"bucket:{n}" for n in facts["bucket_names"]]
    baseline_name = "baseline: popularity per line" if family == "retrieval" else "baseline: user+item mean (smoothed)"
    values: dict = {}   # subset -> label -> metric -> [values over seeds]
    for run in per_run:
        for subset in subsets:
            tables = run["tables"].get(subset)
            if tables is None:
                continue
            rows = {run["branch"]: tables["model"]}
            if "baseline" in tables:
                rows[baseline_name] = tables["baseline"]
            for label, table in rows.items():
                target = values.setdefault(subset, {}).setdefault(label, {})
                if label == baseline_name and target:
                    continue  # the baseline does not depend on the seed: once
                for metric, value in _metric_row(table, family).items():
                    target.setdefault(metric, []).append(value)
    summary = {subset: {label: {m: _stats(v) for m, v in metrics.items()} for label, metrics in by_label.items()}
               for subset, by_label in values.items()}
    counts = {run["branch"]: run["oov"] for run in per_run}
    first_oov = per_run[0]["oov"] if per_run else {}
    return {"family": family, "model": model, "main_metric": MAIN_METRIC[family], "baseline": baseline_name,
            "branches": list(labels), "seeds": seeds, "data": facts, "summary": summary,
            "runs": [{k: v for k, v in run.items() if k != "tables"} for run in per_run],
            "oov": first_oov, "oov_by_branch": counts, "notes": _notes(family)}


def _stats(values: list[float]) -> dict:
    """One summary cell: every seed's value and their mean and sample std (None for one seed)."""
    cell = spread(values)
    return {"mean": cell.mean, "std": cell.std, "values": values}


def _notes(family: str) -> list[str]:
    notes = [
        "id: the item ID embedding alone, no item feature; an item absent from training maps to the OOV "
        "row (counted under OOV below), so every cold item gets the same vector.",
        "content: no item ID anywhere in the model: the item's text (trainable encoder), attributes, "
        "numbers and precomputed vectors; the behaviour history embeds each history item by its content, "
        "looked up in the run's training catalogue (an item it does not hold gets the empty item's "
        "content, as an unseen ID gets the OOV row).",
        "hybrid: the ID embedding and the content side by side (hybrid_combine=concat; gate with "
        "--encoders hybrid:hybrid_combine=gate); the history uses the ID embeddings.",
        "warm / cold: test rows whose item is / is not in the training file. Popularity buckets: cold, then "
        "the training items in groups of equal item counts by their training clicks.",
        "mean ± std: over the seeds (sample std); the seed sets initialisation and batch order, the split is fixed.",
    ]
    if family == "retrieval":
        notes += [
            "two-tower: the ID branches keep the per-item, per-line score offset (item_bias, an ID table); "
            "the content branch predicts the offsets from the content instead (no ID).",
            "ranking: each (user, line) of the test clicks in the subset, ranked against the line's training "
            "catalogue plus the items first seen in validation or test (so cold items can be retrieved at "
            "all); the user's training and validation clicks are removed. Popularity gives unseen items no "
            "clicks, so it ranks them last.",
        ]
    else:
        notes.append("CTR: rows of the subset scored as impressions; AUC, GAUC (impression-weighted over "
                     "users with both classes) and logloss; the baseline knows nothing of unseen items "
                     "(global rate).")
    return notes


# ---- tables ---------------------------------------------------------------------------------------

def _long(cells: dict) -> pd.DataFrame:
    """{row: {column: summary cell}} -> the long frame of :mod:`mdrec.evaluation.tables` (seed:
    the value's position, i.e. the i-th seed)."""
    records = [(row, column, i, value) for row, by_column in cells.items()
               for column, stats in by_column.items() for i, value in enumerate(stats["values"])]
    return pd.DataFrame(records, columns=["row", "column", "seed", "value"])


def summary_table(report: Mapping[str, Any], subset: str) -> pd.DataFrame:
    """Rows: each branch (mean ± std over seeds), then the baseline; columns: the count, the
    metrics, the main metric per line. A cell without a value is "-"."""
    rows = report["summary"].get(subset, {})
    labels = [b for b in report["branches"] if b in rows] + ([report["baseline"]] if report["baseline"] in rows else [])
    metrics: list[str] = []
    for label in labels:
        metrics += [m for m in rows[label] if m not in metrics]
    order = [*COUNTS, *RETRIEVAL_METRICS, *CTR_METRICS]
    metrics.sort(key=lambda m: (order.index(m) if m in order else len(order), m))  # JSON sorts keys
    frame = mean_std_table(_long({label: rows[label] for label in labels}), rows=labels, columns=metrics)
    for count in (c for c in COUNTS if c in metrics):
        frame[count] = [f"{int(rows[label][count]['mean']):,}" if count in rows[label] else "-" for label in labels]
    frame.index.name = "branch"
    return frame


def bucket_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Rows: popularity buckets; columns: the bucket's items and test clicks, then each branch's
    main metric (mean ± std over seeds) and the baseline's."""
    main = report["main_metric"]
    labels = report["branches"] + [report["baseline"]]
    names = report["data"]["bucket_names"]
    cells = {}
    for name in names:
        rows = report["summary"].get(f"bucket:{name}", {})
        cells[name] = {label: rows[label][main] for label in labels if main in rows.get(label, {})}
    frame = mean_std_table(_long(cells), rows=names, columns=labels)
    facts = report["data"]["buckets"]
    frame.insert(0, "test clicks", [f"{facts[name]['test_clicks']:,}" for name in names])
    frame.insert(0, "items", [f"{facts[name]['items']:,}" for name in names])
    frame.index.name = f"{main} by popularity"
    return frame


def findings(report: Mapping[str, Any]) -> list[str]:
    """Each content-based branch against id on the main metric, per subset (difference of the means,
    with the seeds' standard deviations), stated as numbers, not verdicts."""
    main = report["main_metric"]
    lines = []
    ids = [b for b in report["branches"] if b.split(" ")[0] == "id"]
    if not ids:
        return lines
    base = ids[0]
    for subset in ("warm", "cold", "all"):
        rows = report["summary"].get(subset, {})
        if base not in rows or main not in rows[base]:
            continue
        others = [label for label in report["branches"] if label != base and main in rows.get(label, {})]
        deltas = versus(_long({label: {main: rows[label][main]} for label in [base, *others]}), base,
                        rows=others, columns=[main])[main]
        for label in others:
            stds = ", ".join(f"{x:.4f}" for x in (rows[label][main]["std"], rows[base][main]["std"]) if x is not None)
            lines.append(f"{SUBSETS[subset]}: {label} − {base} = {deltas[label]:+.4f} {main}"
                         + (f" (seed std {stds})" if stds else ""))
    return lines


# ---- files ------------------------------------------------------------------------------------------

def write_report(report: BranchesReport, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    paths = {"report.md": out / "report.md", "report.json": out / "report.json", "plot": out / "popularity.png"}
    report["files"] = {k: recorded_path(v, paths["report.json"]) for k, v in paths.items()}  # names beside it
    _plot(report, paths["plot"])
    atomic_write_text(paths["report.md"], _markdown(report))
    atomic_write_json(paths["report.json"], report)
    return paths


def _markdown_table(table: pd.DataFrame) -> str:
    """Markdown with the row label left-aligned and every other column (numbers) right-aligned."""
    cells = [[str(table.index.name or "")] + [str(c) for c in table.columns]]
    cells += [[str(i)] + [str(v) for v in row] for i, row in zip(table.index, table.itertuples(index=False))]
    rule = ["| :--- |" + "".join(" ---: |" for _ in table.columns)]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines[:1] + rule + lines[1:])


def _markdown(report: Mapping[str, Any]) -> str:
    data, command = report["data"], report.get("command", {})
    seeds = ", ".join(map(str, report["seeds"]))
    lines = [f"# ID vs content: {report['model']} with each item encoder", ""]
    lines.append(f"Spec `{command.get('spec', '')}`; test split `{command.get('files', {}).get('test', '')}`; "
                 f"seeds {seeds}; {command.get('epochs', '?')} epoch(s) at most, batch {command.get('batch_size', '?')}.")
    if data.get("items_held_out"):
        lines.append(f"Cold-item split of `{data['source']}` (by {data['split']}, seed {data['split_seed']}): "
                     f"{data['items_held_out']:,} items ({data['cold_item_share']:.0%}) held out of training.")
    lines.append(f"Rows: train {data['rows']['train']:,}, valid {data['rows']['valid']:,}, test {data['rows']['test']:,}. "
                 f"Test items: {data['test_items']['warm']:,} warm, {data['test_items']['cold']:,} cold; "
                 f"test clicks: {data['test_clicks']['warm']:,} on warm items, {data['test_clicks']['cold']:,} on cold items.")
    if "catalogue" in data:
        lines.append(f"Catalogue: {data['catalogue']['training_items']:,} training items + "
                     f"{data['catalogue']['added_from_valid_and_test']:,} first seen in validation or test.")
    lines.append(f"Wall time: {report.get('wall_seconds', 0):.0f} s.")
    lines.append("")
    found = findings(report)
    if found:
        lines += ["## Differences from the ID branch", ""] + [f"- {f}" for f in found] + [""]
    for subset, title in SUBSETS.items():
        if subset in report["summary"]:
            lines += [f"## Test: {title}", "", _markdown_table(summary_table(report, subset)), ""]
        else:
            lines += [f"## Test: {title}", "", "No test clicks of this kind." if report["family"] == "retrieval"
                      else "No test rows of this kind.", ""]
    lines += [f"## {report['main_metric']} by item popularity (training clicks)", "",
              _markdown_table(bucket_table(report)), "", "![metric by popularity bucket](popularity.png)", ""]
    oov = report.get("oov", {})
    if oov:
        lines += ["## OOV on the test split (the id branch's view; nothing is dropped)", ""]
        lines += [f"- {name}: {c['oov']:,} of {c['values']:,} values map to the OOV bucket" for name, c in oov.items()]
        lines.append("")
    lines += ["## Runs", "", "| branch | seed | best epoch | epochs | train s | run |", "| :--- | ---: | ---: | ---: | ---: | :--- |"]
    for run in report["runs"]:
        best = run["best_epoch"] + 1 if run.get("best_epoch") is not None else "-"
        lines.append(f"| {run['branch']} | {run['seed']} | {best} | {run.get('epochs_run', '-')} | "
                     f"{run['train_seconds']} | `{run['run']}` |")
    lines += ["", "## How to read this", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _plot(report: Mapping[str, Any], path: Path) -> None:
    """The main metric by popularity bucket, one line per branch (error bars: seed std), the
    baseline dashed. matplotlib's object API with the Agg canvas (no GUI, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = report["data"]["bucket_names"]
    main = report["main_metric"]
    figure = Figure(figsize=(7.5, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    for label in report["branches"] + [report["baseline"]]:
        means, stds = [], []
        for name in names:
            stats = report["summary"].get(f"bucket:{name}", {}).get(label, {}).get(main)
            means.append(np.nan if stats is None else stats["mean"])
            stds.append(0.0 if stats is None or stats["std"] is None else stats["std"])
        baseline = label == report["baseline"]
        axes.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=label,
                      linestyle="--" if baseline else "-", color="grey" if baseline else None)
    axes.set_xticks(x)
    axes.set_xticklabels([n.replace(" (0: not in training)", "") for n in names], rotation=15)
    axes.set_xlabel("item popularity: training clicks")
    axes.set_ylabel(f"test {main}")
    axes.set_title(f"{report['model']}: {main} by item popularity (mean ± std over {len(report['seeds'])} seed(s))")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png")
