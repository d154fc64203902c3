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

This module checks the arguments, trains and scores the runs; the splits, item facts and per-run
tables are in :mod:`mdrec.workflows.branches_items`, the aggregation over seeds, the tables and the
files in :mod:`mdrec.workflows.branches_report`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mdrec.data.catalogue import Catalogue
from mdrec.errors import MdrecError
from mdrec.training.schedule import BRANCHES as SCHEDULE
from mdrec.workflows.branches_items import (Items, Printer, ctr_tables, data_facts, extend_catalogue,
                                            resolve_splits, retrieval_tables)
from mdrec.workflows.branches_report import BranchesReport, assemble, write_report

BRANCHES = ("id", "content", "hybrid")


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


# ---- the comparison --------------------------------------------------------------------------------

def compare_branches(spec_path, out, *, model: str = "two_tower", data=None, train=None, valid=None,
                     test=None, cold_items: float | None = None, split: str = "time", split_seed: int = 0,
                     encoders: str | Sequence[str] = BRANCHES, seeds: Sequence[int] = (0,),
                     epochs: int = SCHEDULE["epochs"], batch_size: int = SCHEDULE["batch_size"],
                     learning_rate: float = SCHEDULE["learning_rate"], patience: int = SCHEDULE["patience"],
                     hyperparameters: dict | None = None, buckets: int = 4, overwrite: bool = False,
                     log: Printer = print) -> BranchesReport:
    """Train ``model`` once per item encoder and seed; write report.md, report.json, popularity.png
    to ``out``. Returns the report as report.json holds it."""
    family, branches, seeds, hyperparameters = _checked(spec_path, model, encoders, seeds, buckets, hyperparameters)
    out = Path(out)
    started = time.time()
    files, split_info = resolve_splits(spec_path, out, data=data, train=train, valid=valid, test=test,
                                       cold_items=cold_items, split=split, split_seed=split_seed, log=log)
    training = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "patience": patience}
    runs = _train_runs(spec_path, out, model, branches, seeds, files, hyperparameters, training,
                       overwrite=overwrite, log=log)
    log("evaluating on the test split")
    per_run, facts = _evaluate_runs(runs, files["test"], family, buckets, split_info)
    report: BranchesReport = assemble(family, model, [b.label for b in branches], seeds, per_run, facts)
    report["command"] = {"spec": str(Path(spec_path).resolve()), "model": model,
                         "files": {k: str(Path(v).resolve()) if v else v for k, v in files.items()},
                         "encoders": [b.label for b in branches], "seeds": seeds, **training,
                         "hyperparameters": hyperparameters, "buckets": buckets}
    report["wall_seconds"] = round(time.time() - started, 1)
    write_report(report, out)
    return report


def _checked(spec_path, model: str, encoders, seeds: Sequence[int], buckets: int,
             hyperparameters: dict | None) -> tuple[str, list[Branch], list[int], dict]:
    """The arguments, refused before any work when wrong: (model family, branches, seeds, hyperparameters)."""
    from mdrec.layers.item_encoders import content_features
    from mdrec.models.registry import ALL_MODELS, model_family
    from mdrec.spec import load_spec

    if model not in ALL_MODELS:
        raise MdrecError(f"unknown --model '{model}'", hint=f"use one of {', '.join(ALL_MODELS)}, e.g. two_tower or star")
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
    return model_family(model), branches, seeds, hyperparameters


def _train_runs(spec_path, out: Path, model: str, branches: list[Branch], seeds: list[int], files: dict,
                hyperparameters: dict, training: dict, *, overwrite: bool, log: Printer) -> list[dict]:
    """Train (or resume) every branch x seed in ``out/runs/<branch>-seed<k>``; one entry per run."""
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    runs = []
    total = len(branches) * len(seeds)
    baselines = None  # every run shares the split: its sanity rows are searched once, by the first run
    for branch in branches:
        for seed in seeds:
            path = out / "runs" / f"{branch.folder}-seed{seed}"
            config = TrainConfig(model=model, train=files["train"], valid=files["valid"], test=files["test"],
                                 seed=seed, **training,
                                 hyperparameters={**hyperparameters, **branch.params, "item_encoder": branch.name})
            log(f"[{len(runs) + 1}/{total}] {model} with item_encoder={branch.label}, seed {seed} -> {path}")
            t0 = time.time()
            metrics = train_run(spec_path, config, path, overwrite=overwrite, log=lambda m: log(f"    {m}"),
                                baselines_from=baselines)
            if metrics.get("family") == "retrieval":
                baselines = metrics["baselines"]
            runs.append({"branch": branch.label, "seed": seed, "run": str(path),
                         "train_seconds": round(time.time() - t0, 1), "best_epoch": metrics.get("best_epoch"),
                         "epochs_run": metrics.get("epochs_run")})
    return runs


def _evaluate_runs(runs: list[dict], test: str, family: str, buckets: int,
                   split_info: dict) -> tuple[list[dict], dict]:
    """Each run scored on every item subset of ``test``: (the runs with "oov" and "tables", the data facts)."""
    from mdrec.workflows.restore import restore_for

    cache: dict = {}   # the runs share the test log, its sequences and the baseline's fit
    per_run: list[dict] = []
    setup = None
    for entry in runs:
        r = restore_for(entry["run"], test, cache=cache, need_context=True)
        if setup is None:
            setup = _test_setup(r, family, buckets, split_info, cache)
        items, _, against = setup
        if family == "retrieval":
            tables = retrieval_tables(r, items, against, r.seen_clicks())
        else:
            tables = ctr_tables(r, items, against)
        per_run.append({**entry, "oov": r.transform.oov_counts(r.log, r.spec, r.history), "tables": tables})
    return per_run, setup[1] if setup else {}


def _test_setup(r, family: str, buckets: int, split_info: dict,
                cache: dict) -> tuple[Items, dict, Catalogue | np.ndarray]:
    """What every run is scored against, from the first run: the test rows' item facts, the data
    facts, and the catalogue with the cold items added (retrieval) or the baseline's scores [N] (CTR)."""
    train_log = r.context["train"]
    items = Items.of(r.log, train_log, r.spec, buckets)
    facts = data_facts(r, items, train_log, split_info)
    if family == "retrieval":
        seen = [r.context["valid"], r.log] if "valid" in r.context else [r.log]
        catalogue = extend_catalogue(r.model.catalogue, seen, r.spec)
        facts["catalogue"] = {"training_items": len(r.model.catalogue),
                              "added_from_valid_and_test": len(catalogue) - len(r.model.catalogue)}
        return items, facts, catalogue
    from mdrec.evaluation.baselines.ctr import MEAN, ctr_ids
    from mdrec.workflows.evaluate import ctr_baselines_of

    # the user+item mean with the smoothing the first run chose on validation
    fitted, _ = ctr_baselines_of(r.run, r.config, r.spec, cache=cache)
    mean = next(b for b in fitted if b.name == MEAN)
    return items, facts, mean.predict(*ctr_ids(r.log, r.spec)[:3])
