"""The offline A/B of two retrieval (two_tower) runs, or a run and a retrieval sanity row: Recall@K
and NDCG@K of the per-user ranking queries, paired user bootstrap."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError
from mdrec.evaluation import stats
from mdrec.evaluation.ab_statistics import summarise, verdict_table
from mdrec.workflows.ab_result import ABResult
from mdrec.workflows.ab_sides import BASELINE_PREFIX, Side

RETRIEVAL_KS = (10, 50)


def retrieval_ab(sides: list[Side], data: str | Path, settings: dict, fitted_on: str | None,
                 say: Callable[[str], None]) -> ABResult:
    """:class:`ABResult` of two retrieval sides (run folders or a run and ``baseline:NAME``)."""
    families = {s.family for s in sides}
    if families != {"retrieval"} or any(s.kind not in ("run", "baseline") for s in sides):
        raise MdrecError("a retrieval model can only be compared with another retrieval model, both as "
                         "run folders", hint="give two two_tower run folders, or two CTR models")
    if settings["slices"] or settings["propensity_column"]:
        raise MdrecError("--slice and --propensity apply to CTR comparisons, not to retrieval runs")
    say("ranking the log's clicks with both retrieval runs")
    table, sizes = compare_retrieval(sides[0].path, sides[1].path, data, n_bootstrap=settings["n_bootstrap"],
                                     seed=settings["seed"], alpha=settings["alpha"], fitted_on=fitted_on)
    names = list(dict.fromkeys(table["metric"]))
    return ABResult("retrieval", verdict_table(table, sizes, names[0], names[1:]), table, sizes,
                    {s.role: s.describe() for s in sides}, settings,
                    notes=["queries: one per (user, line) with clicks in the log; the users' training "
                           "(and validation) clicks are removed from the ranking, as in mdrec evaluate"])


def _retrieval_queries(path: str, data: str | Path, ks: Sequence[int], fitted_on: str | None = None):
    """(queries, per-query metrics {name: (Q,)}, line names (Q,)) of a two_tower run on ``data``, or
    of a ``baseline:NAME`` fitted on the run ``fitted_on``."""
    from mdrec.evaluation.ranking import full_ranking, popularity_scores, ranking_queries
    from mdrec.training.retrieval import model_scores
    from mdrec.workflows.restore import restore_for

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
        from mdrec.workflows.evaluate import chosen_baseline_settings

        kind, _, per_line = baseline.partition("-")
        fitted = fit_baselines(r.spec, model.catalogue, r.context["train"], r.context.get("valid"), kinds=(kind,),
                               scopes=("per line" if per_line else "all lines",),
                               chosen=chosen_baseline_settings(r.run))[0]
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
