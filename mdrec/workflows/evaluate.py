"""Scoring a finished run on a log: ``mdrec evaluate`` (CTR tables per line, or retrieval
recall/NDCG per line), each beside the sanity rows refitted with the settings the run chose."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, Log, load_log
from mdrec.data.transform import Transform
from mdrec.evaluation.baselines.ctr import MEAN, ctr_ids, fit_ctr_baselines
from mdrec.evaluation.baselines.retrieval import fit_baselines
from mdrec.fileio import atomic_write_json
from mdrec.models.registry import model_family
from mdrec.spec import Spec
from mdrec.training.run import RunDir, TrainConfig
from mdrec.workflows.restore import restore_for
from mdrec.workflows.run_tables import ctr_table, table_records


@dataclass
class CtrEvaluation:
    """A CTR run scored on a log (:func:`evaluate_run`)."""

    record: dict[str, Any]               # JSON-ready (what --out writes): run, data, rows, table, oov, ...
    table: pd.DataFrame                  # per-line metrics, one row per line and "ALL"
    baselines: dict[str, pd.DataFrame]   # sanity row name -> its per-line table (empty: see record's note)
    predictions: pd.DataFrame            # label, score, domain per row: what reliability diagrams bin


@dataclass
class RetrievalEvaluation:
    """A retrieval run ranked on a log's clicks (:func:`evaluate_retrieval_run`)."""

    record: dict[str, Any]               # JSON-ready, what --out writes
    tables: dict[str, Any]               # "full" (and "sampled"): row name -> per-line table; "counts"


def evaluate_run(run_path: str | Path, data: str | Path, *, out: str | Path | None = None,
                 cache: dict | None = None) -> CtrEvaluation | RetrievalEvaluation:
    """Metrics of a trained run on ``data``: per-domain table, OOV and missing counts.

    ``cache``: see :func:`restore_for` (``mdrec compare`` shares one across its runs).
    """
    from mdrec.training.inference import predict

    if model_family(RunDir(run_path).read_config()[0].model) == "retrieval":
        return evaluate_retrieval_run(run_path, data, out=out)
    r = restore_for(run_path, data, cache=cache)
    scores = predict(r.model, r.inputs)
    table = ctr_table(r.spec, r.log, scores)
    result = {"run": str(r.run.path), "data": str(data), "rows": len(r.log), "table": table_records(table),
              "oov": r.transform.oov_counts(r.log, r.spec, r.history), "missing_values": r.log.missing}
    if r.note:
        result["sequence_context"] = r.note
    baselines, note = ctr_baseline_tables(r.run, r.config, r.spec, r.log, cache=cache)
    result["baselines"] = {name: table_records(t) for name, t in baselines.items()}
    if note:
        result["baselines_note"] = note
    if out:
        atomic_write_json(out, result)
    predictions = pd.DataFrame({"label": r.log.frame[LABEL].to_numpy(), "score": scores,
                                "domain": r.log.frame[DOMAIN].to_numpy(dtype=object)})
    return CtrEvaluation(result, table, baselines, predictions)


def ctr_baseline_tables(run: RunDir, config: TrainConfig, spec: Spec, log_: Log, *, cache: dict | None = None
                        ) -> tuple[dict[str, pd.DataFrame], str | None]:
    """The CTR sanity rows on ``log_`` (name -> per-line table), or ({}, why not)."""
    fitted, note = ctr_baselines_of(run, config, spec, cache=cache)
    ids = ctr_ids(log_, spec)
    return {b.name: ctr_table(spec, log_, b.predict(*ids[:3])) for b in fitted if not b.skipped}, note


def ctr_baselines_of(run: RunDir, config: TrainConfig, spec: Spec, *, cache: dict | None = None) -> tuple[list, str | None]:
    """A CTR run's sanity rows refitted on its training file with the settings it chose on
    validation (searched again on its validation file for runs that recorded none), or ([], why not)."""
    if not config.train or not Path(config.train).exists():
        return [], f"no baseline rows: the run's training file {config.train} is not there"
    chosen = chosen_baseline_settings(run) or {}
    key = ("ctr baselines", config.train, json.dumps(chosen, sort_keys=True))
    if cache is not None and key in cache:
        return cache[key], None
    train = load_log(config.train, spec)
    valid = load_log(config.valid, spec) if config.valid and Path(config.valid).exists() else None
    levels = Transform.load(run.transform_path).grade_levels if run.transform_path.is_file() else None
    fitted = fit_ctr_baselines([ctr_ids(train, spec, grades=levels is not None)],
                               ctr_ids(valid, spec) if valid is not None else None, chosen=chosen or None,
                               levels=levels)
    if cache is not None:
        cache[key] = fitted
    return fitted, None


def evaluate_retrieval_run(run_path: str | Path, data: str | Path, *, out: str | Path | None = None,
                           sampled: bool = False, negatives: int = 999, seed: int = 0,
                           baselines: bool = True) -> RetrievalEvaluation:
    """Recall/NDCG/HR@K per line of a retrieval run on ``data``'s clicks, with the popularity row
    and (``baselines``) ItemKNN and EASE refitted on the run's training clicks with the settings
    the run chose on validation.

    The run's training clicks (and validation clicks, unless ``data`` is the validation split)
    are removed from each user's ranking. ``sampled`` adds the 1 + ``negatives`` protocol.
    """
    from mdrec.training import retrieval

    r = restore_for(run_path, data, need_context=True)
    seen = r.seen_clicks()
    fitted = fit_baselines(r.spec, r.model.catalogue, r.context["train"], r.context.get("valid"),
                           chosen=chosen_baseline_settings(r.run)) if baselines else []
    tables = retrieval.retrieval_tables(r.model, r.spec, r.model.catalogue, r.log, r.history, seen,
                                        sampled=sampled, negatives=negatives, seed=seed, baselines=fitted)
    result = {"run": str(r.run.path), "data": str(data), "family": "retrieval", "rows": len(r.log),
              "counts": tables["counts"], "oov": r.transform.oov_counts(r.log, r.spec, r.history),
              "missing_values": r.log.missing, "sequence_context": r.note,
              "removed_from_ranking": [n for n in ("train", "valid") if n in r.context],
              "full": {name: table_records(t) for name, t in tables["full"].items()}}
    if sampled:
        result["sampled"] = {name: table_records(t) for name, t in tables["sampled"].items()}
        result["sampled_protocol"] = {"negatives": negatives, "seed": seed}
    result["baselines"] = {b.name: b.report() for b in fitted}
    if out:
        atomic_write_json(out, result)
    return RetrievalEvaluation(result, tables)


def chosen_baseline_settings(run: RunDir) -> dict[str, dict] | None:
    """The sanity rows' settings a run chose on its validation split, by row name (the CTR mean's
    alpha included); None before they were recorded: the search then runs again on the run's
    validation file."""
    if not run.metrics_path.is_file():
        return None
    metrics = run.read_metrics()
    chosen = {MEAN: {"alpha": metrics["baseline"]["alpha"]}} if "alpha" in metrics.get("baseline", {}) else {}
    chosen.update({name: b["settings"] for name, b in metrics.get("baselines", {}).items() if "skipped" not in b})
    return chosen or None
