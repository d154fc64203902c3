"""The two arms of an offline A/B: what each side is and its scores on the log's rows.

A side is a run folder, an export, a prediction file or a CTR sanity row (``baseline:NAME``,
fitted on the other side's training file); see :mod:`mdrec.workflows.ab`. Every side ends as
scores (n,) and labels (n,) in the log's row order, checked against the log read with the
analysis spec.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mdrec.data.log import Log
from mdrec.errors import MdrecError
from mdrec.progress import progress
from mdrec.spec import Spec, load_spec
from mdrec.workflows.ab_predictions import read_predictions

BASELINE_PREFIX = "baseline:"
# The sanity rows a side may name (``--control baseline:NAME``), per model family.
BASELINE_SIDES = {"ctr": ("mean", "logistic", "logistic-graded"),
                  "retrieval": ("popularity", "itemknn", "itemknn-per-line", "ease", "ease-per-line")}


@dataclass
class Side:
    """One arm of the A/B: how it was given (kind, path, model) and, once scored, its scores and
    labels (n,) on the log's rows."""

    role: str                      # "control" / "treatment"
    path: str
    kind: str                      # "run" / "export" / "predictions" / "baseline"
    model: str | None = None
    family: str = "ctr"
    spec: Spec | None = None
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None
    context: dict[str, Log] = field(default_factory=dict)   # the run's other splits (runs only)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"path": self.path, "kind": self.kind, "model": self.model}


def side_kind(path: str | Path) -> str:
    """"run", "export" or "predictions" for a path given as a side."""
    from mdrec.export.versions import is_complete, versions

    p = Path(path)
    if not p.exists():
        raise MdrecError("not found", path=str(p), hint="pass a run folder (mdrec train --out), an export "
                         "(export/MODEL) or a prediction file (CSV/Parquet with the log's keys and a score)")
    if p.is_dir():
        if (p / "config.json").is_file() and not is_complete(p):
            return "run"
        if is_complete(p) or versions(p):
            return "export"
    return "predictions"


def open_side(role: str, path: str | Path) -> Side:
    """A side as given: its kind, and for a model its name, family and spec (nothing scored yet)."""
    if str(path).startswith(BASELINE_PREFIX):
        return Side(role, str(path), "baseline", model=str(path)[len(BASELINE_PREFIX):])
    side = Side(role, str(path), side_kind(path))
    if side.kind == "run":
        from mdrec.models.registry import model_family
        from mdrec.training.run import RunDir

        run = RunDir(path)
        config, _ = run.read_config()
        side.model, side.family, side.spec = config.model, model_family(config.model), run.load_spec()
    elif side.kind == "export":
        folder, info = _export_folder(path)
        side.path = str(folder)
        side.model, side.family = info.get("model"), info.get("family", "ctr")
        side.spec = load_spec(folder / "assets" / "spec.yaml")
    return side


def _export_folder(path: str | Path) -> tuple[Path, dict]:
    from mdrec.export.request import version_folder
    from mdrec.export.versions import EXPORT_JSON

    folder, _, _ = version_folder(path)  # export/MODEL -> its highest complete version
    info_path = folder / "assets" / EXPORT_JSON
    if not info_path.is_file():
        raise MdrecError(f"not an mdrec export (no assets/{EXPORT_JSON})", path=str(folder),
                         hint="export a run with `mdrec export --run RUN --name MODEL`")
    return folder, json.loads(info_path.read_text())


def check_baseline_sides(sides: list[Side]) -> str | None:
    """The run a ``baseline:NAME`` side is fitted on (the other side), after checking the name."""
    named = [s for s in sides if s.kind == "baseline"]
    if not named:
        return None
    other = next((s for s in sides if s.kind != "baseline"), None)
    if len(named) == 2 or other is None or other.kind != "run":
        raise MdrecError(f"{named[0].path}: a sanity row is fitted on the other side's training file, so the "
                         "other side must be a run folder", hint="e.g. --control baseline:mean --treatment runs/star")
    named[0].family, named[0].spec = other.family, other.spec
    allowed = BASELINE_SIDES[other.family]
    if named[0].model not in allowed:
        raise MdrecError(f"unknown sanity row {named[0].path!r} for a {other.family} model",
                         hint="use one of " + ", ".join(BASELINE_PREFIX + n for n in allowed))
    return other.path


# ---- scoring the log (CTR sides) -----------------------------------------------------------------

def score_sides(sides: list[Side], data: str | Path, log_: Log, spec: Spec, score_column: str | tuple[str, str],
                fitted_on: str | None, say: Callable[[str], None]) -> list[str]:
    """Score the log ``data`` (read as ``log_`` with ``spec``) with both sides; the sides' notes."""
    cache: dict = {}
    notes: list[str] = []
    score_columns = (score_column, score_column) if isinstance(score_column, str) else tuple(score_column)
    for side, column in zip(sides, score_columns):
        say(f"scoring the log with the {side.role}: {side.path} ({side.kind})")
        score_side(side, data, log_, spec, column, fitted_on, cache)
        notes += side.notes
    return notes


def score_side(side: Side, data: str | Path, log_: Log, spec: Spec, score_column: str, fitted_on: str | None,
               cache: dict) -> None:
    """Set ``side.scores`` (n,) and ``side.labels`` (n,) on the log's rows; refuses other labels or
    rows than ``spec`` reads, and non-finite scores."""
    if side.kind == "run":
        _score_run(side, data, cache)
    elif side.kind == "baseline":
        _score_baseline(side, fitted_on, data, spec, log_, cache)
    elif side.kind == "export":
        _score_export(side, data)
    else:
        side.scores = read_predictions(side.path, log_, spec, score_column)
        side.labels = log_.labels
    if len(side.scores) != len(log_) or not np.array_equal(side.labels, log_.labels):
        raise MdrecError(f"the {side.role} reads different labels or rows from the log than spec "
                         f"'{spec.name}' does (its spec's label rule differs)", path=side.path,
                         hint="compare models of one spec, or pass --spec")
    if not np.all(np.isfinite(side.scores)):
        raise MdrecError(f"the {side.role} produced non-finite scores", path=side.path)


def _score_run(side: Side, data: str | Path, cache: dict) -> None:
    """Predict ``data`` with a CTR run (best weights); keeps the run's context splits."""
    from mdrec.training.inference import predict
    from mdrec.workflows.restore import restore_for

    r = restore_for(side.path, data, cache=cache, need_context=True)
    side.scores, side.labels, side.context = predict(r.model, r.inputs), r.log.labels, r.context


def _score_baseline(side: Side, run_path: str, data: str | Path, spec: Spec, log_: Log, cache: dict) -> None:
    """Score ``data`` with a CTR sanity row fitted on the run's training file (its chosen settings)."""
    from mdrec.evaluation.baselines.ctr import GRADED, LOGISTIC, MEAN, ctr_ids
    from mdrec.training.run import RunDir
    from mdrec.workflows.evaluate import ctr_baselines_of

    run = RunDir(run_path)
    fitted, note = ctr_baselines_of(run, run.read_config()[0], spec, cache=cache)
    if note:
        raise MdrecError(note, path=run_path, hint="restore the run's training file to fit the sanity row on it")
    name = {"mean": MEAN, "logistic": LOGISTIC, "logistic-graded": GRADED}[side.model]
    baseline = next((b for b in fitted if b.name == name), None)
    if baseline is None:  # only a label cut from a graded column has the graded row
        raise MdrecError(f"{BASELINE_PREFIX}{side.model}: the run's label is not cut from a graded column",
                         path=run_path, hint=f"use {BASELINE_PREFIX}logistic")
    if baseline.skipped:
        raise MdrecError(f"{side.path}: {baseline.skipped}", path=run_path)
    side.scores, side.labels = baseline.predict(*ctr_ids(log_, spec)[:3]), log_.labels
    side.notes.append(f"{side.role}: {name} fitted on {run_path}'s training file "
                      f"({', '.join(f'{k} {v:g}' for k, v in baseline.settings.items())})")


def _score_export(side: Side, data: str | Path, batch_size: int = 4096) -> None:
    """Score ``data`` with an export's ``serving_default`` signature (raw features in)."""
    import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from mdrec.data.pipeline import model_inputs
    from mdrec.data.transform import Transform
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.restore import evaluation_context

    folder = Path(side.path)
    if side.family != "ctr":
        raise MdrecError(f"this export is a {side.family} model; an export side must be a CTR model "
                         "(compare retrieval models as run folders)", path=str(folder))
    assets = folder / "assets"
    transform = Transform.load(assets / "transform.json")
    config = TrainConfig()
    if (assets / "config.json").is_file():  # the run's splits give sequences their earlier context
        config = TrainConfig(**json.loads((assets / "config.json").read_text())["config"])
    log_, history, note, side.context = evaluation_context(config, side.spec, transform, data, need_context=True)
    if side.spec.sequence is not None and note and note.get("missing_context_files"):
        side.notes.append(f"{side.role}: behaviour sequences built without {', '.join(note['missing_context_files'])} "
                          "(not found)")
    inputs = model_inputs(log_, side.spec, history)
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    names = list(serve.structured_input_signature[1])
    parts = []
    for start in progress(range(0, len(log_), batch_size), label=f"scoring {len(log_):,} rows with {folder}",
                          unit="batch"):
        batch = {name: tf.constant(inputs[name][start:start + batch_size]) for name in names}
        parts.append(np.asarray(serve(**batch)["probability"]).reshape(-1))
    side.scores, side.labels = np.concatenate(parts).astype(np.float64), log_.labels
