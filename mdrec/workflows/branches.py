"""``mdrec compare-branches``: one backbone, each item encoder (ID, content, hybrid), one split.

MoRec (Yuan et al., SIGIR 2023) asked whether an item's content can replace its ID embedding. This
trains the same backbone (a two-tower retrieval model or a CTR model such as STAR) once per item
encoder and seed on the same train/valid/test files, and reports the test metrics

- overall, for warm items (seen in training) and for cold items (absent from training: a
  ``--cold-items`` split holds a seeded share of the items out of training on purpose),
- per business line,
- by item popularity (training clicks) bucket, as a table and a plot,

as mean ± std over the seeds, beside the sanity baseline (per-line popularity for retrieval,
the smoothed user + item mean for CTR). Files (written atomically): report.md, report.json,
popularity.png; the runs are in ``runs/<branch>-seed<k>`` (resumed when run again), the splits
made from ``--data`` in ``data/``.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue, item_keys
from mdrec.data.log import LABEL, Log
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_file, atomic_write_json, atomic_write_text
from mdrec.records import recorded_path
from mdrec.training.schedule import BRANCHES as SCHEDULE

BRANCHES = ("id", "content", "hybrid")
SUBSETS = {"all": "all items", "warm": "warm items (seen in training)",
           "cold": "cold items (absent from training)"}
RETRIEVAL_METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100")
CTR_METRICS = ("auc", "gauc", "logloss")
MAIN_METRIC = {"retrieval": "recall@50", "ctr": "auc"}
COLD_BUCKET = "cold (0: not in training)"

Printer = Callable[[str], None]


@dataclass(frozen=True)
class Branch:
    """One item encoder to train: ``name`` (id, content or hybrid) and extra model parameters
    (``content:text_encoder=transformer`` -> name content, {"text_encoder": "transformer"})."""

    name: str
    params: dict = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        return self.name + "".join(f" {k}={v}" for k, v in self.params.items())

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name + "".join(f"-{k}-{v}" for k, v in self.params.items()))


def parse_branches(text: str | Sequence[str]) -> list[Branch]:
    """``id,content,hybrid`` or entries with parameters: ``content:text_encoder=transformer``."""
    import yaml

    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text) if e.strip()]
    if not entries:
        raise MdrecError("no item encoder to compare", hint=f"e.g. --encoders {','.join(BRANCHES)}")
    out = []
    for entry in entries:
        name, *pairs = entry.split(":")
        if name not in BRANCHES:
            raise MdrecError(f"unknown item encoder '{name}' in --encoders",
                             hint=f"use {', '.join(BRANCHES)} (optionally with :key=value parameters)")
        params = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise MdrecError(f"'{pair}' in --encoders entry '{entry}' must look like key=value, "
                                 "e.g. content:text_encoder=transformer")
            params[key] = yaml.safe_load(value)
        out.append(Branch(name, params))
    if len({b.label for b in out}) != len(out):
        raise MdrecError("an item encoder is listed twice in --encoders")
    return out


# ---- data ----------------------------------------------------------------------------------------

def resolve_splits(spec_path, out: Path, *, data=None, train=None, valid=None, test=None,
                   cold_items: float | None = None, split: str = "time", split_seed: int = 0,
                   log: Printer = print) -> tuple[dict[str, str], dict]:
    """The train/valid/test files to compare on (split from ``data`` with cold items when given)."""
    from mdrec.data.splits import split_files

    given = [p for p in (train, valid, test) if p]
    if data and given:
        raise MdrecError("give either --data (split here, with --cold-items) or --train/--valid/--test, not both")
    if data:
        share = 0.1 if cold_items is None else float(cold_items)
        log(f"splitting {data} by {split}, holding {share:.0%} of the items out of training (seed {split_seed})")
        written = split_files(spec_path, data, out / "data", by=split, seed=split_seed, cold_items=share)
        info = {"source": str(data), "split": split, "split_seed": split_seed, "cold_item_share": share,
                "items_held_out": written["cold_items"][0] if "cold_items" in written else 0}
        return {name: str(written[name][1]) for name in ("train", "valid", "test")}, info
    if len(given) != 3:
        raise MdrecError("compare-branches needs --train, --valid and --test (or --data LOG to split here)",
                         hint="e.g. --data log.parquet --cold-items 0.1")
    if cold_items:
        raise MdrecError("--cold-items splits a log given with --data; with --train/--valid/--test the cold "
                         "items are the test items absent from the training file",
                         hint="drop --cold-items, or pass --data instead")
    for name, path in (("train", train), ("valid", valid), ("test", test)):
        if not Path(path).exists():
            raise MdrecError(f"--{name} file not found", path=str(path))
    return {"train": str(train), "valid": str(valid), "test": str(test)}, {"source": "given splits"}


def extend_catalogue(catalogue: Catalogue, logs: Sequence[Log], spec) -> Catalogue:
    """The catalogue plus the items of ``logs`` it lacks (features as last seen there, lines they
    appeared in, no training clicks): cold items become retrievable candidates."""
    new = Catalogue.from_log(Log.concat(list(logs)), spec, catalogue.domains)
    add = np.flatnonzero(catalogue.index_of(new.keys) < 0)
    if len(add) == 0:
        return catalogue
    frame = pd.concat([catalogue.frame, new.frame.iloc[add][catalogue.frame.columns]], ignore_index=True)
    dense = {k: np.concatenate([v, new.dense[k][add]]) for k, v in catalogue.dense.items()}
    membership = np.concatenate([catalogue.membership, new.membership[:, add]], axis=1)
    positives = np.concatenate([catalogue.positives, np.zeros((len(catalogue.domains), len(add)), np.int64)], 1)
    return Catalogue(frame, dense, list(catalogue.domains), membership, positives, catalogue.id_column)


@dataclass
class Items:
    """Per-row item facts of the evaluated log: warm/cold and popularity bucket."""

    keys: np.ndarray          # object [N] table keys
    warm: np.ndarray          # bool [N]
    bucket: np.ndarray        # int [N]; 0 = cold
    bucket_names: list[str]
    train_clicks: dict        # key -> training clicks

    @classmethod
    def of(cls, log: Log, train: Log, spec, buckets: int) -> "Items":
        train_keys = item_keys(train, spec)
        clicks = pd.Series(train.frame[LABEL].to_numpy() > 0).groupby(train_keys).sum().astype(np.int64)
        keys = item_keys(log, spec)
        position = clicks.index.get_indexer(keys)
        warm = position >= 0
        per_item = clicks.to_numpy()
        edges = np.unique(np.quantile(per_item, np.arange(1, buckets) / buckets, method="lower")) \
            if len(per_item) else np.zeros(0)
        names = [COLD_BUCKET]
        low = 0
        for edge in list(edges) + [None]:
            if edge is None:
                names.append(f"{low}+ clicks" if low else "all warm")
            else:
                names.append(f"{low}-{int(edge)} clicks" if int(edge) > low else f"{low} clicks")
                low = int(edge) + 1
        bucket = np.zeros(len(keys), np.int64)
        bucket[warm] = 1 + np.searchsorted(edges, per_item[position[warm]], side="left")
        return cls(keys, warm, bucket, names, clicks.to_dict())


# ---- evaluation of one run -------------------------------------------------------------------------

def _subset_masks(items: Items) -> dict[str, np.ndarray]:
    masks = {"all": np.ones(len(items.keys), bool), "warm": items.warm, "cold": ~items.warm}
    for b, name in enumerate(items.bucket_names):
        masks[f"bucket:{name}"] = items.bucket == b
    return masks


def _ctr_tables(r, items: Items, baseline_scores: np.ndarray | None) -> dict:
    """{subset: {"model": DataFrame, "baseline": DataFrame}} of a CTR run on r.log."""
    from mdrec.training.loop import predict
    from mdrec.workflows.train import _report

    scores = predict(r.model, r.inputs)
    out = {}
    for subset, mask in _subset_masks(items).items():
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        part = r.log.take(rows)
        out[subset] = {"model": _report(r.spec, part, scores[rows])}
        if baseline_scores is not None:
            out[subset]["baseline"] = _report(r.spec, part, baseline_scores[rows])
    return out


def _retrieval_tables(r, items: Items, catalogue: Catalogue, seen: list[Log]) -> dict:
    """{subset: {"model": DataFrame, "baseline": DataFrame}}: each user's clicks of the subset's
    items ranked against the whole (extended) catalogue of the line."""
    from mdrec.data.pipeline import model_inputs
    from mdrec.evaluation.ranking import KS, full_ranking, per_domain_table, popularity_scores, ranking_queries
    from mdrec.training.retrieval import candidate_embeddings, query_embeddings

    clicked = r.log.frame[LABEL].to_numpy() > 0
    candidates = candidate_embeddings(r.model, catalogue)
    query_cache: dict[int, np.ndarray] = {}

    def queries_for(rows: np.ndarray) -> np.ndarray:
        todo = np.array([row for row in rows.tolist() if row not in query_cache], np.int64)
        if len(todo):
            vectors = query_embeddings(r.model, model_inputs(r.log.take(todo), r.spec,
                                                             r.history[todo] if r.history is not None else None))
            query_cache.update(zip(todo.tolist(), vectors))
        return np.stack([query_cache[row] for row in rows.tolist()])

    out = {}
    for subset, mask in _subset_masks(items).items():
        rows = np.flatnonzero(mask & clicked)
        if len(rows) == 0:
            continue
        part = r.log.take(rows)
        queries = ranking_queries(part, r.spec, catalogue, seen)
        if len(queries) == 0:
            continue
        q = queries_for(rows[queries.rows])
        scorers = {"model": lambda positions, q=q: q[positions] @ candidates.T,
                   "baseline": popularity_scores(catalogue, queries)}
        out[subset] = {name: per_domain_table(full_ranking(score, queries, catalogue.membership, KS),
                                              queries.domain, catalogue.domains)
                       for name, score in scorers.items()}
        out[subset]["counts"] = dict(queries.counts, queries=len(queries))
    return out


# ---- the comparison --------------------------------------------------------------------------------

def compare_branches(spec_path, out, *, model: str = "two_tower", data=None, train=None, valid=None,
                     test=None, cold_items: float | None = None, split: str = "time", split_seed: int = 0,
                     encoders: str | Sequence[str] = BRANCHES, seeds: Sequence[int] = (0,),
                     epochs: int = SCHEDULE["epochs"], batch_size: int = SCHEDULE["batch_size"],
                     learning_rate: float = SCHEDULE["learning_rate"], patience: int = SCHEDULE["patience"],
                     hyperparameters: dict | None = None, buckets: int = 4, overwrite: bool = False,
                     log: Printer = print) -> dict:
    """Train ``model`` once per item encoder and seed; write report.md, report.json, popularity.png
    to ``out``. Returns the report as a dict (plus "_tables": the formatted tables)."""
    from mdrec.layers.item_encoders import content_features
    from mdrec.models.registry import ALL_MODELS, model_family
    from mdrec.spec import load_spec
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import restore_for, train_run

    if model not in ALL_MODELS:
        raise MdrecError(f"unknown --model '{model}'", hint=f"use one of {', '.join(ALL_MODELS)}, e.g. two_tower or star")
    family = model_family(model)
    spec = load_spec(spec_path)
    branches = parse_branches(encoders)
    if not content_features(spec) and any(b.name != "id" for b in branches):
        raise MdrecError(f"spec '{spec.name}' has no item content (no feature with role item), so there is no "
                         "content branch to compare with the item ID", path=spec.source,
                         hint="add the item's text, attributes or vectors with role item (e.g. {name: title, "
                              "role: item, type: text}), or use a spec that has them")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise MdrecError("--seeds must list distinct integers, e.g. 0,1,2")
    if buckets < 1:
        raise MdrecError(f"--buckets must be at least 1, got {buckets}")
    hyperparameters = dict(hyperparameters or {})
    if "item_encoder" in hyperparameters:
        raise MdrecError("--param item_encoder is what compare-branches varies; choose them with --encoders")
    out = Path(out)
    started = time.time()
    files, split_info = resolve_splits(spec_path, out, data=data, train=train, valid=valid, test=test,
                                       cold_items=cold_items, split=split, split_seed=split_seed, log=log)

    runs = []
    total = len(branches) * len(seeds)
    for branch in branches:
        for seed in seeds:
            path = out / "runs" / f"{branch.folder}-seed{seed}"
            config = TrainConfig(model=model, train=files["train"], valid=files["valid"], test=files["test"],
                                 epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                 patience=patience, seed=seed,
                                 hyperparameters={**hyperparameters, **branch.params, "item_encoder": branch.name})
            log(f"[{len(runs) + 1}/{total}] {model} with item_encoder={branch.label}, seed {seed} -> {path}")
            t0 = time.time()
            metrics = train_run(spec_path, config, path, overwrite=overwrite, log=lambda m: log(f"    {m}"))
            runs.append({"branch": branch.label, "seed": seed, "run": str(path),
                         "train_seconds": round(time.time() - t0, 1), "best_epoch": metrics.get("best_epoch"),
                         "epochs_run": metrics.get("epochs_run")})

    log("evaluating on the test split")
    cache: dict = {}
    per_run: list[dict] = []
    baseline = None
    facts: dict = {}
    for entry in runs:
        r = restore_for(entry["run"], files["test"], cache=cache, need_context=True)
        train_log = r.context["train"]
        if not facts:
            items = Items.of(r.log, train_log, r.spec, buckets)
            facts = _data_facts(r, items, train_log, split_info)
            if family == "retrieval":
                catalogue = extend_catalogue(r.model.catalogue, [r.context["valid"], r.log], r.spec) \
                    if "valid" in r.context else extend_catalogue(r.model.catalogue, [r.log], r.spec)
                facts["catalogue"] = {"training_items": len(r.model.catalogue),
                                      "added_from_valid_and_test": len(catalogue) - len(r.model.catalogue)}
            else:
                from mdrec.evaluation.baselines.ctr import MEAN, ctr_ids
                from mdrec.workflows.train import ctr_baselines_of

                # the user+item mean with the smoothing the first run chose on validation
                fitted, _ = ctr_baselines_of(r.run, r.config, r.spec, cache=cache)
                mean = next(b for b in fitted if b.name == MEAN)
                baseline = mean.predict(*ctr_ids(r.log, r.spec)[:3])
        if family == "retrieval":
            tables = _retrieval_tables(r, items, catalogue, r.seen_clicks())
        else:
            tables = _ctr_tables(r, items, baseline)
        entry["oov"] = r.transform.oov_counts(r.log, r.spec, r.history)
        per_run.append({**entry, "tables": tables})

    report = _assemble(family, model, branches, seeds, per_run, facts, buckets)
    report["command"] = {"spec": str(Path(spec_path).resolve()), "model": model,
                         "files": {k: str(Path(v).resolve()) if v else v for k, v in files.items()},
                         "encoders": [b.label for b in branches],
                         "seeds": seeds, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                         "patience": patience, "hyperparameters": hyperparameters, "buckets": buckets}
    report["wall_seconds"] = round(time.time() - started, 1)
    write_report(report, out)
    return report


def _data_facts(r, items: Items, train_log: Log, split_info: dict) -> dict:
    clicked = r.log.frame[LABEL].to_numpy() > 0
    return {**split_info,
            "rows": {"train": len(train_log), "valid": len(r.context.get("valid", [])), "test": len(r.log)},
            "test_items": {"warm": int(len(set(items.keys[items.warm].tolist()))),
                           "cold": int(len(set(items.keys[~items.warm].tolist())))},
            "test_rows": {"warm": int(items.warm.sum()), "cold": int((~items.warm).sum())},
            "test_clicks": {"warm": int((items.warm & clicked).sum()), "cold": int((~items.warm & clicked).sum())},
            "buckets": {name: {"test_rows": int((items.bucket == b).sum()),
                               "test_clicks": int(((items.bucket == b) & clicked).sum()),
                               "items": int(len(set(items.keys[items.bucket == b].tolist())))}
                        for b, name in enumerate(items.bucket_names)},
            "bucket_names": items.bucket_names}


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


def _assemble(family: str, model: str, branches: list[Branch], seeds: list[int], per_run: list[dict],
              facts: dict, buckets: int) -> dict:
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
    summary: dict = {}
    for subset, by_label in values.items():
        summary[subset] = {}
        for label, metrics in by_label.items():
            summary[subset][label] = {m: {"mean": float(np.mean(v)),
                                          "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                                          "values": v} for m, v in metrics.items()}
    counts = {run["branch"]: run["oov"] for run in per_run}
    first_oov = per_run[0]["oov"] if per_run else {}
    return {"family": family, "model": model, "main_metric": MAIN_METRIC[family], "baseline": baseline_name,
            "branches": [b.label for b in branches], "seeds": seeds, "data": facts, "summary": summary,
            "runs": [{k: v for k, v in run.items() if k != "tables"} for run in per_run],
            "oov": first_oov, "oov_by_branch": counts, "notes": _notes(family)}


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


# ---- report -----------------------------------------------------------------------------------------

def _cell(stats: dict | None, metric: str) -> str:
    if stats is None or metric not in stats or stats[metric]["mean"] is None or np.isnan(stats[metric]["mean"]):
        return "-"
    s = stats[metric]
    if metric in ("queries", "rows"):
        return f"{int(s['mean']):,}"
    return f"{s['mean']:.4f}" if s["std"] is None else f"{s['mean']:.4f} ± {s['std']:.4f}"


def summary_table(report: dict, subset: str) -> pd.DataFrame:
    """Rows: each branch (mean ± std over seeds), then the baseline; columns: metrics, per-line main metric."""
    rows = report["summary"].get(subset, {})
    labels = [b for b in report["branches"] if b in rows] + ([report["baseline"]] if report["baseline"] in rows else [])
    metrics: list[str] = []
    for label in labels:
        metrics += [m for m in rows[label] if m not in metrics]
    order = ["queries", "rows", *RETRIEVAL_METRICS, *CTR_METRICS]
    metrics.sort(key=lambda m: (order.index(m) if m in order else len(order), m))  # JSON sorts keys
    frame = pd.DataFrame({label: {m: _cell(rows[label], m) for m in metrics} for label in labels}).T
    frame.index.name = "branch"
    return frame


def bucket_table(report: dict) -> pd.DataFrame:
    """Rows: popularity buckets; columns: each branch's main metric (mean ± std) and the baseline."""
    main = report["main_metric"]
    labels = report["branches"] + [report["baseline"]]
    out = {}
    for name in report["data"]["bucket_names"]:
        rows = report["summary"].get(f"bucket:{name}", {})
        facts = report["data"]["buckets"][name]
        out[name] = {"items": f"{facts['items']:,}", "test clicks": f"{facts['test_clicks']:,}",
                     **{label: _cell(rows.get(label), main) for label in labels}}
    frame = pd.DataFrame(out).T
    frame.index.name = f"{main} by popularity"
    return frame


def findings(report: dict) -> list[str]:
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
        ref = rows[base][main]
        for label in report["branches"]:
            if label == base or label not in rows or main not in rows[label]:
                continue
            s = rows[label][main]
            delta = s["mean"] - ref["mean"]
            spread = ", ".join(f"{x:.4f}" for x in (s["std"], ref["std"]) if x is not None)
            lines.append(f"{SUBSETS[subset]}: {label} − {base} = {delta:+.4f} {main}"
                         + (f" (seed std {spread})" if spread else ""))
    return lines


def write_report(report: dict, out: str | Path) -> dict[str, Path]:
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


def _markdown(report: dict) -> str:
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


def _plot(report: dict, path: Path) -> None:
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
