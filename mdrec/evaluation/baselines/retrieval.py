"""The retrieval sanity rows: ItemKNN and EASE, fitted on the training clicks, settings chosen on
the validation clicks, scored by the same full-ranking protocol as the model.

Two scopes of each: ``all lines`` learns item-item weights from every line's clicks and reads the
user's clicks in every line (the cross-line signal a joint model is meant to use); ``per line``
fits one model per line on that line's clicks and reads only the user's clicks there. The query's
line still decides which catalogue is ranked. Settings come from a small grid, the one with the
best validation NDCG@10 (on at most ``max_valid_queries`` seeded validation queries) wins; without
a validation split the first grid point is used and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import Log
from mdrec.evaluation.baselines.clicks import click_matrix, click_pairs, training_matrix
from mdrec.evaluation.baselines.ease import EASE, TooLarge
from mdrec.evaluation.baselines.itemknn import ItemKNN
from mdrec.evaluation.ranking import RankingQueries, ScoreBlock, full_ranking, popularity_scores, ranking_queries
from mdrec.spec import Spec

SELECTION_METRIC = "ndcg@10"
# The settings searched on validation. ItemKNN is cheap: every point of its grid is tried. An EASE
# fit is one large solve, so its ladder is walked from the middle toward the better neighbour
# until a step stops helping (3-4 fits instead of 8).
GRIDS: dict[str, list[dict]] = {
    "itemknn": [{"neighbours": k, "shrink": h} for k in (100, 20, 500) for h in (10.0, 0.0, 100.0)],
    "ease": [{"l2": l2} for l2 in (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)],
}
LADDER_START = {"ease": 3}
FACTORIES: dict[str, Callable[..., object]] = {"itemknn": ItemKNN, "ease": EASE}
TITLES = {"itemknn": "ItemKNN", "ease": "EASE"}
SCOPES = ("all lines", "per line")


def row_name(kind: str, scope: str) -> str:
    """The table label of a baseline, e.g. "baseline: EASE (all lines)"."""
    return f"baseline: {TITLES[kind]} ({scope})"


@dataclass
class FittedBaseline:
    """One kind and scope fitted on the training clicks: its models (key None for all lines, else
    the line's name), the chosen settings and the validation score of every grid point."""

    kind: str
    scope: str
    settings: dict
    models: dict
    grid: list[dict] = field(default_factory=list)
    skipped: str | None = None

    @property
    def name(self) -> str:
        return row_name(self.kind, self.scope)

    def report(self) -> dict:
        out = {"kind": self.kind, "scope": self.scope, "settings": self.settings, "validation_grid": self.grid}
        if self.skipped:
            out["skipped"] = self.skipped
        return out

    def scorer(self, queries: RankingQueries, seen: Sequence[Log], spec: Spec, catalogue: Catalogue,
               profiles: dict[str | None, sp.csr_matrix] | None = None) -> ScoreBlock:
        """Scores of each query's user from their clicks in ``seen`` (the context splits). Ties,
        and users with no clicks to go on, fall back to popularity in the query's line (a nudge of
        at most TIE_BREAK, below any difference the models' scores make). ``profiles``: this
        scope's :func:`scope_profiles` of the same queries and ``seen``, when the caller has them
        (every baseline of a scope reads the same clicks)."""
        popularity = popularity_scores(catalogue, queries)
        if profiles is None:
            profiles = scope_profiles(self.scope, queries, seen, spec, catalogue)
        if self.scope == "all lines":
            model, everywhere = self.models[None], profiles[None]

            def score(positions: np.ndarray) -> np.ndarray:
                return model.score(everywhere[positions]) + _nudge(popularity(positions))

            return score

        def score_per_line(positions: np.ndarray) -> np.ndarray:
            out = _nudge(popularity(positions))
            for d in np.unique(queries.domain[positions]):
                line = catalogue.domains[d]
                mine = queries.domain[positions] == d
                out[mine] += self.models[line].score(profiles[line][positions[mine]])
            return out

        return score_per_line


def baseline_scorers(baselines: Sequence[FittedBaseline], queries: RankingQueries, seen: Sequence[Log], spec: Spec,
                     catalogue: Catalogue) -> dict[str, ScoreBlock]:
    """name -> the scorer of each fitted (not skipped) baseline; each scope's clicks are read once."""
    fitted = [b for b in baselines if not b.skipped]
    profiles = {scope: scope_profiles(scope, queries, seen, spec, catalogue) for scope in {b.scope for b in fitted}}
    return {b.name: b.scorer(queries, seen, spec, catalogue, profiles[b.scope]) for b in fitted}


def scope_profiles(scope: str, queries: RankingQueries, seen: Sequence[Log], spec: Spec,
                   catalogue: Catalogue) -> dict[str | None, sp.csr_matrix]:
    """The clicks a baseline of ``scope`` reads for each query: key None -> :func:`query_profiles`
    over every line ("all lines"), else each queried line -> the user's clicks in that line."""
    if scope == "all lines":
        return {None: query_profiles(queries, seen, spec, catalogue)}
    return {catalogue.domains[d]: query_profiles(queries, seen, spec, catalogue, line=catalogue.domains[d])
            for d in np.unique(queries.domain)}


TIE_BREAK = 1e-4


def _nudge(popularity: np.ndarray) -> np.ndarray:
    """Popularity [q, N] scaled into [0, TIE_BREAK) per row, float32."""
    return (TIE_BREAK * popularity / (popularity.max(1, keepdims=True) + 1.0)).astype(np.float32)


def query_profiles(queries: RankingQueries, seen: Sequence[Log], spec: Spec, catalogue: Catalogue,
                   line: str | None = None) -> sp.csr_matrix:
    """Binary csr [Q, N]: each query's user's clicks in ``seen`` (in ``line`` only, if named)."""
    codes, users = pd.factorize(pd.Series(queries.users, dtype=object))
    matrix = click_matrix(click_pairs(seen, spec, catalogue, line), list(users), len(catalogue))
    return matrix[codes]


def fit_baselines(spec: Spec, catalogue: Catalogue, train: Log, valid: Log | None = None, *,
                  kinds: Sequence[str] = ("itemknn", "ease"), scopes: Sequence[str] = SCOPES,
                  lines: Sequence[str] | None = None,
                  chosen: dict[str, dict] | None = None, grids: dict[str, list[dict]] | None = None,
                  max_valid_queries: int = 3000, log: Callable[[str], None] = lambda *_: None) -> list[FittedBaseline]:
    """Fit every kind x scope on ``train``'s clicks. ``chosen`` (name -> settings, e.g. from a run's
    metrics.json) skips the validation search, and ``grids`` (name -> the validation grid those
    settings won, as a report records it) is kept with them; otherwise each grid is searched on
    ``valid``. ``lines``: the lines a "per line" baseline gets a model for (default: every line;
    fewer when only those lines' users are scored, e.g. one target line)."""
    queries = None
    if valid is not None and not chosen:
        queries = ranking_queries(valid, spec, catalogue, [train])
        if len(queries) > max_valid_queries:
            queries = queries.subset(np.sort(np.random.default_rng(0).choice(len(queries), max_valid_queries,
                                                                             replace=False)))
    per_line = list(catalogue.domains) if lines is None else list(lines)
    # What every kind of one scope reads: its training matrices, and the validation queries' clicks.
    matrices: dict[str, dict[str | None, sp.csr_matrix]] = {}
    profiles: dict[str, dict[str | None, sp.csr_matrix] | None] = {}
    fitted = []
    for kind in kinds:
        for scope in scopes:
            if scope not in matrices:
                matrices[scope] = {line: training_matrix(click_pairs([train], spec, catalogue, line), len(catalogue))
                                   for line in ([None] if scope == "all lines" else per_line)}
                profiles[scope] = scope_profiles(scope, queries, [train], spec, catalogue) \
                    if queries is not None and len(queries) else None
            name = row_name(kind, scope)
            baseline = _fit_one(kind, scope, spec, catalogue, train, queries, (chosen or {}).get(name), log,
                                matrices=matrices[scope], profiles=profiles[scope])
            if chosen and name in chosen:
                baseline.grid = list((grids or {}).get(name, []))
            fitted.append(baseline)
    return fitted


def _fit_one(kind: str, scope: str, spec: Spec, catalogue: Catalogue, train: Log, queries: RankingQueries | None,
             chosen: dict | None, log: Callable[[str], None], *, matrices: dict[str | None, sp.csr_matrix],
             profiles: dict[str | None, sp.csr_matrix] | None) -> FittedBaseline:
    """One kind x scope: its models fitted on ``matrices`` (line, or None for all lines -> training
    clicks), settings ``chosen`` or searched on ``queries`` (whose clicks are ``profiles``)."""
    grid = GRIDS[kind]
    searching = not chosen and profiles is not None
    fitted: dict[int, tuple[FittedBaseline, float]] = {}

    def attempt(settings: dict) -> FittedBaseline:
        models = {line: FACTORIES[kind](**settings).fit(m) for line, m in matrices.items()}
        return FittedBaseline(kind, scope, dict(settings), models)

    try:
        if not searching:
            return attempt(chosen or grid[LADDER_START.get(kind, 0)])

        def evaluate(index: int) -> float:
            if index not in fitted:
                candidate = attempt(grid[index])
                score = float(full_ranking(candidate.scorer(queries, [train], spec, catalogue, profiles), queries,
                                           catalogue.membership, (10,))[SELECTION_METRIC].mean())
                log(f"{candidate.name} {grid[index]}: valid {SELECTION_METRIC} {score:.4f}")
                fitted[index] = (candidate, score)
            return fitted[index][1]

        if kind in LADDER_START:
            _walk(evaluate, LADDER_START[kind], len(grid))
        else:
            for index in range(len(grid)):
                evaluate(index)
    except TooLarge as error:
        return FittedBaseline(kind, scope, dict(chosen or grid[LADDER_START.get(kind, 0)]), {}, skipped=str(error))
    order = sorted(fitted)
    best = max(order, key=lambda i: (fitted[i][1], -order.index(i)))
    result = fitted[best][0]
    result.grid = [{**grid[i], f"valid_{SELECTION_METRIC}": round(fitted[i][1], 5)} for i in order]
    return result


def _walk(evaluate: Callable[[int], float], start: int, size: int) -> None:
    """Hill-climb a 1-D ladder of settings: from ``start`` step toward the better neighbour while
    the score improves."""
    here = start
    while True:
        neighbours = [i for i in (here - 1, here + 1) if 0 <= i < size]
        best = max(neighbours, key=evaluate)
        if evaluate(best) <= evaluate(here):
            return
        here = best
