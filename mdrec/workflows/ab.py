"""Offline A/B evaluation: a control (A) and a treatment (B) scored on one held-out log.

``ab_test(control, treatment, data)`` answers "is B better than A on this log, and by how much?"
with intervals rather than single numbers. Each side is one of:

* a run folder (``mdrec train --out``): the model predicts the log (sequences built as in
  ``mdrec evaluate``, with the run's own splits as earlier context);
* an export (``export/MODEL`` — the highest complete version — or ``export/MODEL/<version>``):
  its ``serving_default`` signature scores the log's raw features;
* a prediction file or folder (CSV/TSV/Parquet): one row per log row, joined on the key columns
  — the spec's user id, item id, domain column (if the spec has one) and time column (if the spec
  has one) — with the probability in ``score`` (or ``score_column``). This is how a production
  model's logged scores become the control. Rows are matched one-to-one; a log row without a
  prediction, a prediction matching no log row, a missing key column or a NaN score is an error.

What is compared, per slice (overall, per domain, per user segment, per ``slices`` column):
AUC, GAUC (impression-weighted per-user AUC; users with one class excluded and counted),
logloss, calibration (mean predicted / observed CTR) and expected calibration error; for two
retrieval (two_tower) runs, Recall@K and NDCG@K of the per-user ranking queries instead.

Statistics (see :mod:`mdrec.evaluation.stats`): deltas B − A with 95% intervals from a paired
bootstrap that resamples users; AUC's p-value from DeLong's test with a user-clustered variance,
the other metrics' from the bootstrap standard error; Holm's correction per metric across the
slices; a verdict per slice and metric (better / worse / no detectable difference: better or
worse when the Holm-adjusted p-value is below ``alpha`` *and* the interval excludes 0); the
minimum detectable effect (power 0.8, level ``alpha``) at the slice's size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mdrec.data.io import read_file, table_files
from mdrec.data.log import DOMAIN, TIME, Log, load_log, parse_keys
from mdrec.errors import MdrecError
from mdrec.evaluation import metrics as M
from mdrec.evaluation import stats
from mdrec.evaluation.ab_slices import column_slices, user_segments
from mdrec.evaluation.ab_statistics import compare_scores, ips_table, legend, summarise, verdict_table
from mdrec.progress import progress
from mdrec.records import recorded_path
from mdrec.spec import Spec, load_spec

Printer = Callable[[str], None]
RETRIEVAL_KS = (10, 50)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class ABResult:
    """The outcome of :func:`ab_test`.

    verdict: the printed table, one row per slice (rows, users, positives, the primary metric's
        A / B / delta / 95% CI / Holm p / MDE / verdict, and the other metrics' verdicts).
    metrics: one row per (slice, metric): control, treatment, delta, ci_low, ci_high, se, p,
        test, p_holm, mde, verdict.
    slices: one row per slice: rows, users, positives (queries for retrieval), gauc users used /
        excluded.
    ips: IPS / SNIPS click-rate estimates per policy with intervals (None without propensities).
    notes: what was skipped or assumed, in words (printed and written to the report).
    sides: how each side was read (kind, path, model).
    curves: labels and both sides' scores (CTR) for the report's plots; not in summary.json.
    """

    family: str
    verdict: pd.DataFrame
    metrics: pd.DataFrame
    slices: pd.DataFrame
    sides: dict[str, dict]
    settings: dict
    notes: list[str] = field(default_factory=list)
    ips: pd.DataFrame | None = None
    curves: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def summary(self, record: str | Path | None = None) -> dict:
        """Everything but the curves, JSON-ready (NaN -> null). With ``record`` (the file it is
        written to), its paths (the data, each side's) are absolute or relative to that file's
        folder, as :func:`mdrec.records.recorded_path` writes them."""
        settings, sides = dict(self.settings), {role: dict(side) for role, side in self.sides.items()}
        if record is not None:
            settings["data"] = recorded_path(settings["data"], record)
            for side in sides.values():
                if side["kind"] != "baseline":  # baseline:NAME is a name, not a path
                    side["path"] = recorded_path(side["path"], record)
        out = {"family": self.family, "settings": settings, "sides": sides, "notes": self.notes,
               "slices": _records(self.slices), "metrics": _records(self.metrics),
               "verdict": _records(self.verdict)}
        if self.ips is not None:
            out["ips"] = _records(self.ips)
        return out


def _records(table: pd.DataFrame) -> list[dict]:
    frame = table.reset_index() if table.index.name else table
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _json_value(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


# --------------------------------------------------------------------------------------------
# sides
# --------------------------------------------------------------------------------------------
@dataclass
class _Side:
    role: str                      # "control" / "treatment"
    path: str
    kind: str                      # "run" / "export" / "predictions"
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


BASELINE_PREFIX = "baseline:"
# The sanity rows a side may name (``--control baseline:NAME``), per model family.
BASELINE_SIDES = {"ctr": ("mean", "logistic"),
                  "retrieval": ("popularity", "itemknn", "itemknn-per-line", "ease", "ease-per-line")}


def _open_side(role: str, path: str | Path) -> _Side:
    if str(path).startswith(BASELINE_PREFIX):
        return _Side(role, str(path), "baseline", model=str(path)[len(BASELINE_PREFIX):])
    side = _Side(role, str(path), side_kind(path))
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


def _score_run(side: _Side, data: str | Path, cache: dict) -> None:
    """Predict ``data`` with a CTR run (best weights); keeps the run's context splits."""
    from mdrec.training.loop import predict
    from mdrec.workflows.train import restore_for

    r = restore_for(side.path, data, cache=cache, need_context=True)
    side.scores, side.labels, side.context = predict(r.model, r.inputs), r.log.labels, r.context


def _check_baseline_sides(sides: list[_Side]) -> str | None:
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


def _score_baseline(side: _Side, run_path: str, data: str | Path, spec: Spec, log_: Log, cache: dict) -> None:
    """Score ``data`` with a CTR sanity row fitted on the run's training file (its chosen settings)."""
    from mdrec.evaluation.baselines.ctr import LOGISTIC, MEAN, ctr_ids
    from mdrec.training.run import RunDir
    from mdrec.workflows.train import ctr_baselines_of

    run = RunDir(run_path)
    fitted, note = ctr_baselines_of(run, run.read_config()[0], spec, cache=cache)
    if note:
        raise MdrecError(note, path=run_path, hint="restore the run's training file to fit the sanity row on it")
    name = {"mean": MEAN, "logistic": LOGISTIC}[side.model]
    baseline = next(b for b in fitted if b.name == name)
    if baseline.skipped:
        raise MdrecError(f"{side.path}: {baseline.skipped}", path=run_path)
    side.scores, side.labels = baseline.predict(*ctr_ids(log_, spec)[:3]), log_.labels
    side.notes.append(f"{side.role}: {name} fitted on {run_path}'s training file "
                      f"({', '.join(f'{k} {v:g}' for k, v in baseline.settings.items())})")


def _score_export(side: _Side, data: str | Path, batch_size: int = 4096) -> None:
    """Score ``data`` with an export's ``serving_default`` signature (raw features in)."""
    import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from mdrec.data.pipeline import model_inputs
    from mdrec.data.transform import Transform
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import evaluation_context

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


def prediction_keys(spec: Spec) -> list[tuple[str, str]]:
    """(file column, log frame column) of the keys a prediction file must carry: user id, item id,
    the domain column if the spec has one, the time column if the spec has one."""
    keys = [(spec.user_id.column, spec.user_id.name), (spec.item_id.column, spec.item_id.name)]
    if spec.domain.column:
        keys.append((spec.domain.column, DOMAIN))
    if spec.time:
        keys.append((spec.time, TIME))
    return keys


def read_predictions(path: str | Path, log: Log, spec: Spec, score_column: str = "score") -> np.ndarray:
    """Scores (n,) of a prediction file, in the log's row order, joined on :func:`prediction_keys`.

    Key values are parsed exactly as the log's (ids as text, times as unix seconds). Rows with equal
    keys are matched in file order. Every log row needs exactly one prediction and every
    prediction one log row; scores must be finite probabilities in [0, 1].
    """
    keys = prediction_keys(spec)
    files = table_files(path)
    frames = [read_file(f) for f in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    source = str(path)
    missing = [c for c, _ in keys if c not in frame.columns]
    if missing:
        raise MdrecError(f"prediction file lacks key column(s) {', '.join(map(repr, missing))}; it needs "
                         f"{', '.join(repr(c) for c, _ in keys)} (user id, item id"
                         f"{', domain' if spec.domain.column else ''}{', time' if spec.time else ''} of spec "
                         f"'{spec.name}') and a score column; it has {', '.join(map(str, frame.columns))}",
                         path=source, hint="add the log's key columns to the predictions")
    if score_column not in frame.columns:
        raise MdrecError(f"no score column '{score_column}'; the file has {', '.join(map(str, frame.columns))}",
                         path=source, hint="name the probability column with --score-column")
    scores = pd.to_numeric(frame[score_column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(scores)
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"score {frame[score_column].iloc[row]!r} is not a finite number", path=source,
                         column=score_column, row=row + 1, hint="every row needs a probability; drop "
                         "or fix the row in both the log and the predictions")
    bad = (scores < 0) | (scores > 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"score {scores[row]!r} is outside [0, 1]", path=source, column=score_column,
                         row=row + 1, hint="give click probabilities (apply the sigmoid to logits)")
    theirs = parse_keys(frame, keys, source)
    ours = log.frame[[name for _, name in keys]].reset_index(drop=True)
    names = [name for _, name in keys]
    for table in (theirs, ours):
        table["__nth__"] = table.groupby(names, sort=False).cumcount()  # duplicates pair in order
    theirs["__pred_row__"] = np.arange(len(theirs))
    ours["__log_row__"] = np.arange(len(ours))
    joined = ours.merge(theirs, on=names + ["__nth__"], how="outer", indicator=True)

    def describe(row) -> str:
        return ", ".join(f"{col}={row[name]!r}" for col, name in keys)

    unmatched = joined[joined["_merge"] == "left_only"].sort_values("__log_row__")
    if len(unmatched):
        first = unmatched.iloc[0]
        raise MdrecError(f"{len(unmatched):,} of the log's {len(ours):,} rows have no prediction; first: log "
                         f"row {int(first['__log_row__']) + 1} ({describe(first)})", path=source,
                         hint=f"the predictions must score every row of the log once, keyed by "
                              f"{', '.join(c for c, _ in keys)}")
    extra = joined[joined["_merge"] == "right_only"].sort_values("__pred_row__")
    if len(extra):
        first = extra.iloc[0]
        raise MdrecError(f"{len(extra):,} prediction rows match no log row; first: row "
                         f"{int(first['__pred_row__']) + 1} ({describe(first)})", path=source,
                         hint="score exactly the rows of --data (same keys; a row repeated in the log is "
                              "repeated in the predictions)")
    joined = joined.sort_values("__log_row__")
    return scores[joined["__pred_row__"].to_numpy(dtype=np.int64)]


# inverse propensity scoring: the logging policy's propensities
# --------------------------------------------------------------------------------------------
def read_propensities(data: str | Path, column: str, n: int) -> np.ndarray:
    """The logging policy's propensities (n,) from ``data``'s ``column``: finite, in (0, 1]."""
    frames = []
    for file in table_files(data):
        frame = read_file(file)
        if column not in frame.columns:
            raise MdrecError(f"no propensity column '{column}'; the file has {', '.join(map(str, frame.columns))}",
                             path=str(file), hint="name the logging policy's probability column with --propensity")
        frames.append(frame[column])
    raw = pd.concat(frames, ignore_index=True)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(values) & (values > 0) & (values <= 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise MdrecError(f"propensity {raw.iloc[row]!r} is not a probability in (0, 1]", path=str(data),
                         column=column, row=row + 1, hint="IPS divides by the propensity: every row needs one")
    if len(values) != n:
        raise MdrecError(f"{len(values)} propensities for {n} log rows", path=str(data), column=column)
    return values


# --------------------------------------------------------------------------------------------
# retrieval runs
# --------------------------------------------------------------------------------------------
def _retrieval_queries(path: str, data: str | Path, ks: Sequence[int], fitted_on: str | None = None):
    """(queries, per-query metrics {name: (Q,)}, line names (Q,)) of a two_tower run on ``data``, or
    of a ``baseline:NAME`` fitted on the run ``fitted_on``."""
    from mdrec.evaluation.ranking import full_ranking, popularity_scores, ranking_queries
    from mdrec.training.retrieval import model_scores
    from mdrec.workflows.train import restore_for

    baseline = path[len(BASELINE_PREFIX):] if path.startswith(BASELINE_PREFIX) else None
    r = restore_for(fitted_on if baseline else path, data, need_context=True)
    model = r.model
    seen = r.seen_clicks()
    queries = ranking_queries(r.log, r.spec, model.catalogue, seen)
    if baseline is None:
        score = model_scores(model, r.spec, model.catalogue, r.log, r.history, queries)
    elif baseline == "popularity":
        score = popularity_scores(model.catalogue, queries)
    else:
        from mdrec.evaluation.baselines.retrieval import fit_baselines
        from mdrec.workflows.train import _chosen_baseline_settings

        kind, _, per_line = baseline.partition("-")
        fitted = fit_baselines(r.spec, model.catalogue, r.context["train"], r.context.get("valid"), kinds=(kind,),
                               scopes=("per line" if per_line else "all lines",),
                               chosen=_chosen_baseline_settings(r.run))[0]
        if fitted.skipped:
            raise MdrecError(f"{path}: {fitted.skipped}", path=fitted_on)
        score = fitted.scorer(queries, seen, r.spec, model.catalogue)
    per_query = full_ranking(score, queries, model.catalogue.membership, ks)
    lines = np.asarray(model.catalogue.domains, dtype=object)[queries.domain]
    return queries, per_query, lines


def compare_retrieval(control: str, treatment: str, data: str | Path, *, n_bootstrap: int, seed: int,
                      alpha: float, ks: Sequence[int] = RETRIEVAL_KS, fitted_on: str | None = None
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recall@K and NDCG@K of two retrieval runs (or a run and a ``baseline:NAME`` fitted on the run
    ``fitted_on``) on the same queries, paired user bootstrap."""
    qa, ma, lines = _retrieval_queries(control, data, ks, fitted_on)
    qb, mb, _ = _retrieval_queries(treatment, data, ks, fitted_on)
    if not np.array_equal(qa.rows, qb.rows):
        raise MdrecError(f"the two retrieval runs rank different queries ({len(qa)} vs {len(qb)}): their "
                         "training / validation files differ, so different clicks are removed", path=str(data),
                         hint="compare runs trained on the same splits")
    if len(qa) == 0:
        raise MdrecError("the log has no clicks to rank (no retrieval query)", path=str(data))
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    values = {m: np.stack([ma[m], mb[m]], axis=1) for m in names}
    replicates = stats.bootstrap_user_means(values, qa.users, lines, n_bootstrap=n_bootstrap, seed=seed)
    points, sizes = {}, []
    for name in replicates:
        mask = np.ones(len(lines), dtype=bool) if name == "ALL" else lines == name.split("=", 1)[1]
        points[name] = {m: tuple(values[m][mask].mean(axis=0)) for m in names}
        sizes.append({"slice": name, "queries": int(mask.sum()), "users": int(len(pd.unique(qa.users[mask])))})
    return summarise(points, replicates, alpha), pd.DataFrame(sizes).set_index("slice")


# --------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------
def ab_test(control: str | Path, treatment: str | Path, data: str | Path, *, out: str | Path | None = None,
            slices: Sequence[str] = (), n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05,
            propensity_column: str | None = None, score_column: str | tuple[str, str] = "score",
            spec: str | Path | None = None, history: str | Path | None = None, log: Printer | None = None
            ) -> ABResult:
    """Compare ``treatment`` (B) with ``control`` (A) on the log ``data``; see the module docstring.

    score_column: the probability column of prediction files, or a (control, treatment) pair when
    they differ (e.g. production's scores logged in the log itself as the control). spec: needed
    only when both sides are prediction files (it names the key columns); history: a log whose
    users count as returning (default: a run side's training file). With ``out``, report.md,
    report.html and summary.json are written there (atomically).
    """
    say = log or (lambda _msg: None)
    if n_bootstrap < 2:
        raise MdrecError(f"--bootstrap {n_bootstrap}: use at least 2 replicates (1000 is usual)")
    if not 0 < alpha < 1:
        raise MdrecError(f"alpha {alpha} must be in (0, 1)")
    sides = [_open_side("control", control), _open_side("treatment", treatment)]
    fitted_on = _check_baseline_sides(sides)
    families = {s.family for s in sides}
    settings = {"data": str(data), "n_bootstrap": n_bootstrap, "seed": seed, "alpha": alpha,
                "slices": list(slices), "propensity_column": propensity_column}
    if "retrieval" in families:
        if families != {"retrieval"} or any(s.kind not in ("run", "baseline") for s in sides):
            raise MdrecError("a retrieval model can only be compared with another retrieval model, both as "
                             "run folders", hint="give two two_tower run folders, or two CTR models")
        if slices or propensity_column:
            raise MdrecError("--slice and --propensity apply to CTR comparisons, not to retrieval runs")
        say("ranking the log's clicks with both retrieval runs")
        table, sizes = compare_retrieval(sides[0].path, sides[1].path, data, n_bootstrap=n_bootstrap,
                                         seed=seed, alpha=alpha, fitted_on=fitted_on)
        names = list(dict.fromkeys(table["metric"]))
        result = ABResult("retrieval", verdict_table(table, sizes, names[0], names[1:]), table, sizes,
                          {s.role: s.describe() for s in sides}, settings,
                          notes=["queries: one per (user, line) with clicks in the log; the users' training "
                                 "(and validation) clicks are removed from the ranking, as in mdrec evaluate"])
        return _finish(result, out, say)

    analysis_spec = load_spec(spec) if spec else next((s.spec for s in sides if s.spec is not None), None)
    if analysis_spec is None:
        raise MdrecError("both sides are prediction files, so nothing says which columns are the log's keys",
                         hint="give --spec SPEC (the log's feature spec)")
    log_ = load_log(data, analysis_spec)
    # bad --slice / --propensity fail here, before any model is loaded
    column_masks = column_slices(log_, analysis_spec, slices)
    p0 = read_propensities(data, propensity_column, len(log_)) if propensity_column else None
    cache: dict = {}
    notes: list[str] = []
    score_columns = (score_column, score_column) if isinstance(score_column, str) else tuple(score_column)
    for side, column in zip(sides, score_columns):
        say(f"scoring the log with the {side.role}: {side.path} ({side.kind})")
        if side.kind == "run":
            _score_run(side, data, cache)
        elif side.kind == "baseline":
            _score_baseline(side, fitted_on, data, analysis_spec, log_, cache)
        elif side.kind == "export":
            _score_export(side, data)
        else:
            side.scores = read_predictions(side.path, log_, analysis_spec, column)
            side.labels = log_.labels
        if len(side.scores) != len(log_) or not np.array_equal(side.labels, log_.labels):
            raise MdrecError(f"the {side.role} reads different labels or rows from the log than spec "
                             f"'{analysis_spec.name}' does (its spec's label rule differs)", path=side.path,
                             hint="compare models of one spec, or pass --spec")
        if not np.all(np.isfinite(side.scores)):
            raise MdrecError(f"the {side.role} produced non-finite scores", path=side.path)
        notes += side.notes

    known, past = None, None
    if history:
        known = past = load_log(history, analysis_spec)
        notes.append(f"history for the user segments: {history}")
    else:
        model_side = next((s for s in sides if "train" in s.context), None)  # a run's or an export's
        if model_side is not None:
            known = past = model_side.context["train"]
            what = f"the {model_side.role}'s training file {', '.join(known.sources)}"
            if TIME in log_.frame and len(model_side.context) > 1:
                past = Log.concat(list(model_side.context.values()))  # earlier events of any split count
                what += f"; prior clicks also from its other splits ({', '.join(sorted(model_side.context))}), " \
                        "earlier events only"
            notes.append(f"history for the user segments: {what}")
    users = log_.frame[analysis_spec.user_id.name].to_numpy(dtype=object)
    masks: dict[str, np.ndarray] = {"ALL": np.ones(len(log_), dtype=bool)}
    domains = log_.frame[DOMAIN].to_numpy(dtype=object)
    for d in sorted(set(domains.tolist())):
        masks[f"domain={d}"] = domains == d
    masks.update(user_segments(log_, analysis_spec, known, past, notes))
    masks.update(column_masks)
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty:
        notes.append(f"no rows in slice(s) {', '.join(empty)}: left out")

    y = log_.labels.astype(np.float64)
    say(f"bootstrapping {n_bootstrap} user resamples over {len(masks)} slices")
    table, sizes = compare_scores(y, sides[0].scores, sides[1].scores, users, masks,
                                  n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
    verdict = verdict_table(table, sizes, "auc", ("gauc", "logloss", "ece", "miscalibration"))
    result = ABResult("ctr", verdict, table, sizes, {s.role: s.describe() for s in sides}, settings, notes,
                      curves={"labels": y, "control": sides[0].scores, "treatment": sides[1].scores})
    if p0 is not None:
        result.ips = ips_table(y, p0, sides[0].scores, sides[1].scores, users, n_bootstrap=n_bootstrap, seed=seed)
    return _finish(result, out, say)


def _finish(result: ABResult, out: str | Path | None, say: Printer) -> ABResult:
    if out is not None:
        from mdrec.workflows.ab_report import write_report

        result.files = {k: str(v) for k, v in write_report(result, out).items()}
        say(f"wrote {', '.join(result.files.values())}")
    return result


def ab_step(star_run: str | Path, base_run: str | Path, test_path: str | Path, out: str | Path,
            log: Printer = print, *, n_bootstrap: int = 500) -> ABResult:
    """The demo's last step: STAR (treatment) against shared-bottom (control) on the test split."""
    log("offline A/B: STAR (treatment) vs shared-bottom (control) on the test split, "
        f"{n_bootstrap} user resamples")
    result = ab_test(base_run, star_run, test_path, out=out, n_bootstrap=n_bootstrap, seed=0)
    log(M.format_table(result.verdict))
    log(legend(result.settings["alpha"], result.family))
    for note in result.notes:
        log(f"note: {note}")
    log(f"report: {result.files.get('report.html')}")
    return result
