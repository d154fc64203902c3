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

The work, by job: :mod:`~mdrec.workflows.ab_sides` reads each side and scores the log with it
(control baselines included), :mod:`~mdrec.workflows.ab_predictions` aligns prediction files and
propensities to the log's rows, :mod:`~mdrec.workflows.ab_retrieval` compares retrieval runs,
this module slices the log and runs the CTR comparison, :mod:`~mdrec.workflows.ab_result` holds
the verdict and its summary, :mod:`~mdrec.workflows.ab_report` writes the report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mdrec.data.log import DOMAIN, TIME, Log, load_log
from mdrec.errors import MdrecError
from mdrec.evaluation import metrics as M
from mdrec.evaluation.ab_slices import column_slices, user_segments
from mdrec.evaluation.ab_statistics import compare_scores, ips_table, legend, verdict_table
from mdrec.spec import Spec, load_spec
from mdrec.workflows.ab_predictions import read_propensities
from mdrec.workflows.ab_result import ABResult
from mdrec.workflows.ab_retrieval import retrieval_ab
from mdrec.workflows.ab_sides import (Side, check_baseline_sides, open_side,
                                      score_sides)

Printer = Callable[[str], None]


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
    sides = [open_side("control", control), open_side("treatment", treatment)]
    fitted_on = check_baseline_sides(sides)
    settings = {"data": str(data), "n_bootstrap": n_bootstrap, "seed": seed, "alpha": alpha,
                "slices": list(slices), "propensity_column": propensity_column}
    if "retrieval" in {s.family for s in sides}:
        result = retrieval_ab(sides, data, settings, fitted_on, say)
    else:
        result = _ctr_ab(sides, data, settings, fitted_on, score_column=score_column, spec=spec,
                         history=history, say=say)
    return _finish(result, out, say)


def _ctr_ab(sides: list[Side], data: str | Path, settings: dict, fitted_on: str | None, *,
            score_column: str | tuple[str, str], spec: str | Path | None, history: str | Path | None,
            say: Printer) -> ABResult:
    """:class:`ABResult` of two CTR sides: both score the log, then the slices are compared."""
    analysis_spec = load_spec(spec) if spec else next((s.spec for s in sides if s.spec is not None), None)
    if analysis_spec is None:
        raise MdrecError("both sides are prediction files, so nothing says which columns are the log's keys",
                         hint="give --spec SPEC (the log's feature spec)")
    log_ = load_log(data, analysis_spec)
    # bad --slice / --propensity fail here, before any model is loaded
    column_masks = column_slices(log_, analysis_spec, settings["slices"])
    propensity_column = settings["propensity_column"]
    p0 = read_propensities(data, propensity_column, len(log_)) if propensity_column else None
    notes = score_sides(sides, data, log_, analysis_spec, score_column, fitted_on, say)
    masks = _slice_masks(log_, analysis_spec, sides, history, notes)
    masks.update(column_masks)
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty:
        notes.append(f"no rows in slice(s) {', '.join(empty)}: left out")

    y = log_.labels.astype(np.float64)
    users = log_.frame[analysis_spec.user_id.name].to_numpy(dtype=object)
    n_bootstrap, seed = settings["n_bootstrap"], settings["seed"]
    say(f"bootstrapping {n_bootstrap} user resamples over {len(masks)} slices")
    table, sizes = compare_scores(y, sides[0].scores, sides[1].scores, users, masks,
                                  n_bootstrap=n_bootstrap, seed=seed, alpha=settings["alpha"])
    verdict = verdict_table(table, sizes, "auc", ("gauc", "logloss", "ece", "miscalibration"))
    result = ABResult("ctr", verdict, table, sizes, {s.role: s.describe() for s in sides}, settings, notes,
                      curves={"labels": y, "control": sides[0].scores, "treatment": sides[1].scores})
    if p0 is not None:
        result.ips = ips_table(y, p0, sides[0].scores, sides[1].scores, users, n_bootstrap=n_bootstrap, seed=seed)
    return result


def _slice_masks(log_: Log, spec: Spec, sides: list[Side], history: str | Path | None,
                 notes: list[str]) -> dict[str, np.ndarray]:
    """Row masks (n,) bool of the overall, per-domain and user-segment slices; notes what history
    the segments read."""
    known, past = _segment_history(log_, spec, sides, history, notes)
    masks: dict[str, np.ndarray] = {"ALL": np.ones(len(log_), dtype=bool)}
    domains = log_.frame[DOMAIN].to_numpy(dtype=object)
    for d in sorted(set(domains.tolist())):
        masks[f"domain={d}"] = domains == d
    masks.update(user_segments(log_, spec, known, past, notes))
    return masks


def _segment_history(log_: Log, spec: Spec, sides: list[Side], history: str | Path | None,
                     notes: list[str]) -> tuple[Log | None, Log | None]:
    """(known, past): the log whose users count as returning, and the log of their prior clicks —
    ``history`` if given, else a model side's training file (its other splits too for prior clicks,
    when the log has times)."""
    if history:
        known = load_log(history, spec)
        notes.append(f"history for the user segments: {history}")
        return known, known
    model_side = next((s for s in sides if "train" in s.context), None)  # a run's or an export's
    if model_side is None:
        return None, None
    known = past = model_side.context["train"]
    what = f"the {model_side.role}'s training file {', '.join(known.sources)}"
    if TIME in log_.frame and len(model_side.context) > 1:
        past = Log.concat(list(model_side.context.values()))  # earlier events of any split count
        what += f"; prior clicks also from its other splits ({', '.join(sorted(model_side.context))}), " \
                "earlier events only"
    notes.append(f"history for the user segments: {what}")
    return known, past


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
