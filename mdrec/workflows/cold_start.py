"""The cold-start transfer table: every method ranked for the target line's cold and warm users.

Input: a split written by ``mdrec data split --by cold_users`` (train/valid/test files) and,
optionally, finished retrieval runs trained on it. Each row of the table is one method:

- no transfer (``transfer: false``): popularity in the target line, ItemKNN and EASE fitted on
  the target line's clicks alone, and any run trained on the target line alone;
- transfer, not learned: ItemKNN and EASE over every line's clicks (co-occurrence through the users
  active in both lines is what carries a user across), and sequel kNN (:mod:`mdrec.transfer.sequel`:
  neighbours in a factorisation of what follows what in every line's log; rank, shelf size and
  blend chosen on the cold validation users);
- transfer, learned: EMCDR (:mod:`mdrec.transfer.mapping`, its rank and mapping chosen on the cold
  validation users) and the runs trained over every line (the joint two-tower).

Every setting is chosen on the validation split; the test split is scored once. Metrics and
intervals: :mod:`mdrec.evaluation.cold_start`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue, item_keys
from mdrec.data.log import DOMAIN, LABEL, TIME, Log, load_log
from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.evaluation.baselines.clicks import click_matrix, click_pairs
from mdrec.evaluation.baselines.retrieval import baseline_scorers, fit_baselines
from mdrec.evaluation.cold_start import (GROUPS, gain_intervals, group_table, line_queries, per_user_metrics,
                                         user_groups)
from mdrec.evaluation.ranking import RankingQueries, ScoreBlock, full_ranking, popularity_scores, ranking_queries
from mdrec.spec import Spec, load_spec
from mdrec.training.run import RunDir

POPULARITY = "popularity (target line)"
EMCDR_NAME = "EMCDR (PureSVD + mapping)"
CEILING = "click-model ceiling (synthetic ground truth)"
SEQUEL_NAME = "sequel kNN (all lines)"
# A rank is one factorisation; the shelf size and the share only re-read it, so every pair of
# them is tried at every rank.
SEQUEL_GRID = [{"rank": r, "neighbours": k, "share": s} for r in (32, 64, 128, 256) for k in (5, 10, 20, 50)
               for s in (0.3, 0.5, 0.7, 0.9)]
EMCDR_GRID = [{"rank": r, "mapping": m} for m in ("linear", "mlp") for r in (32, 64, 128, 256)]


@dataclass
class Method:
    """A row of the table: its name, what kind of method it is, and the settings it was fitted with."""

    name: str
    transfer: bool
    learned: bool
    settings: dict = field(default_factory=dict)
    ceiling: bool = False  # a known click model's own ranking: the bound the others are measured against


@dataclass
class ColdStartResult:
    """Per-method metrics of the test split's target-line users (:func:`cold_start_evaluation`)."""

    methods: list[Method]
    per_user: dict[str, dict[str, np.ndarray]]  # method -> metric -> float [users]
    users: np.ndarray                            # object [users]
    groups: np.ndarray                           # "cold" / "warm" [users]

    def table(self) -> pd.DataFrame:
        return group_table(self.per_user, self.groups)

    def best_without_transfer(self, group: str = "cold", metric: str = "ndcg@10") -> str:
        """The strongest row without transfer for ``group``'s users (every user when the group is
        empty): what transfer has to beat there. Ties go to the row listed first."""
        users = self.groups == group
        users = users if users.any() else np.ones(len(users), bool)
        plain = [m.name for m in self.methods if not m.transfer and not m.ceiling]
        return max(plain, key=lambda name: self.per_user[name][metric][users].mean())

    def share_of_gap(self, group: str = "cold", metric: str = "ndcg@10") -> dict[str, float]:
        """Each transfer method's share of the gap between popularity and the ceiling row on
        ``group``'s users: (method - popularity) / (ceiling - popularity), 1 = the ceiling's level
        (empty without a ceiling row or when the ceiling is not above popularity)."""
        users = self.groups == group
        ceiling = [m.name for m in self.methods if m.ceiling]
        if not ceiling or not users.any():
            return {}
        mean = {name: float(values[metric][users].mean()) for name, values in self.per_user.items()}
        gap = mean[ceiling[0]] - mean[POPULARITY]
        if gap <= 0:
            return {}
        return {m.name: (mean[m.name] - mean[POPULARITY]) / gap for m in self.methods if m.transfer}

    def intervals(self, **kwargs) -> pd.DataFrame:
        """Each method's gain over its group's best row without transfer (column ``reference``),
        with paired user-bootstrap intervals (:func:`gain_intervals`)."""
        parts = []
        for group in GROUPS:
            if not (self.groups == group).any():
                continue
            reference = self.best_without_transfer(group)
            # Only this group's users: gain_intervals skips a label outside GROUPS.
            only = np.where(self.groups == group, self.groups, "")
            gains = gain_intervals(self.per_user, reference, only, self.users, **kwargs)
            if len(gains):
                parts.append(gains.assign(reference=reference))
        return pd.concat(parts) if parts else pd.DataFrame()


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its (method, users) rows named "method, users", for a terminal table."""
    return frame.set_axis([f"{method}, {users}" for method, users in frame.index]).rename_axis("method, users")


class ColdStartTask:
    """One cold-start split, read once: the target line's test users, their groups, and the
    scoring of each method on them (the same sampled negatives for every method)."""

    def __init__(self, spec_path: str | Path, train: str | Path, valid: str | Path, test: str | Path, *,
                 target: str, negatives: int = 999, sample_seed: int = 0,
                 log: Callable[[str], None] = lambda *_: None):
        self.spec = load_spec(spec_path)
        self.test_path, self.target, self.log = test, target, log
        self.negatives, self.sample_seed = negatives, sample_seed
        self.logs = {name: load_log(path, self.spec) for name, path in (("train", train), ("valid", valid),
                                                                         ("test", test))}
        domains = self.spec.domain.values or sorted(set(self.logs["train"].frame[DOMAIN].tolist()))
        self.catalogue = Catalogue.from_log(self.logs["train"], self.spec, list(domains))
        if target not in self.catalogue.domains:
            raise MdrecError(f"the target line '{target}' has no training rows",
                             hint=f"lines: {', '.join(self.catalogue.domains)}")
        self.seen = [self.logs["train"], self.logs["valid"]]
        self.queries = line_queries(ranking_queries(self.logs["test"], self.spec, self.catalogue, self.seen),
                                    self.catalogue, target)
        self.groups = user_groups(self.queries, self.logs["train"], self.spec, self.catalogue)
        log(f"{len(self.queries):,} test users of '{target}': {(self.groups == 'cold').sum():,} cold, "
            f"{(self.groups == 'warm').sum():,} warm")

    def score(self, method: Method, scorer: ScoreBlock) -> tuple[Method, dict[str, np.ndarray]]:
        values = per_user_metrics(scorer, self.queries, self.catalogue.membership, negatives=self.negatives,
                                  seed=self.sample_seed)
        means = {g: values["recall@10"][self.groups == g].mean() if (self.groups == g).any() else np.nan
                 for g in GROUPS}
        self.log(f"{method.name}: cold recall@10 {means['cold']:.4f}, warm {means['warm']:.4f}")
        return method, values

    def baselines(self) -> list[tuple[Method, dict[str, np.ndarray]]]:
        """Popularity, and ItemKNN and EASE in both scopes, settings chosen on the target line's
        validation users."""
        out = [self.score(Method(POPULARITY, transfer=False, learned=False),
                          popularity_scores(self.catalogue, self.queries))]
        valid = self.logs["valid"]
        in_target = valid.take(np.flatnonzero(valid.frame[DOMAIN].to_numpy(dtype=object) == self.target))
        baselines = fit_baselines(self.spec, self.catalogue, self.logs["train"], in_target, lines=[self.target],
                                  log=self.log)
        scorers = baseline_scorers(baselines, self.queries, self.seen, self.spec, self.catalogue)
        for fitted in baselines:
            if fitted.skipped:
                self.log(f"{fitted.name}: skipped ({fitted.skipped})")
                continue
            method = Method(fitted.name, transfer=fitted.scope == "all lines", learned=False, settings=fitted.settings)
            out.append(self.score(method, scorers[fitted.name]))
        return out

    def emcdr(self, seed: int, grid: list[dict] | None = None) -> tuple[Method, dict[str, np.ndarray]]:
        """EMCDR, its setting chosen on the cold validation users among ``grid`` (default EMCDR_GRID)."""
        model, settings = _fit_emcdr(self.spec, self.catalogue, self.logs, self.target, seed, grid or EMCDR_GRID,
                                     self.log)
        return self.score(Method(EMCDR_NAME, transfer=True, learned=True, settings=settings),
                          emcdr_scorer(model, self.spec, self.catalogue, self.queries, self.seen, self.target))

    def sequel(self, seed: int, grid: list[dict] | None = None) -> tuple[Method, dict[str, np.ndarray]]:
        """Sequel kNN (:mod:`mdrec.transfer.sequel`), its setting chosen on the cold validation
        users among ``grid`` (default SEQUEL_GRID)."""
        prior = _exposure_prior(self.logs["train"], self.spec, self.catalogue, self.target)
        model, settings = _fit_sequel(self.spec, self.catalogue, self.logs, self.target, prior, seed,
                                      grid or SEQUEL_GRID, self.log)
        clicks, row = _all_clicks(self.spec, self.catalogue, self.queries, self.seen)
        return self.score(Method(SEQUEL_NAME, transfer=True, learned=False, settings=settings),
                          _in_target_columns(model.score(clicks, prior), row, _line_columns(self.catalogue, self.target),
                                             len(self.catalogue)))

    def run(self, name: str, run: str | Path, transfer: bool) -> tuple[Method, dict[str, np.ndarray]]:
        """A finished retrieval run trained on this split (``transfer``: it saw other lines)."""
        return self.score(Method(name, transfer=transfer, learned=True),
                          run_scorer(run, self.test_path, self.catalogue, self.queries, self.target,
                                     test_lines=set(self.logs["test"].domains)))

    def ceiling(self, expected_clicks: Callable[[Sequence[str], str, Sequence[str]], np.ndarray]
                ) -> tuple[Method, dict[str, np.ndarray]]:
        """The ranking by a known click model (``expected_clicks(users, line, item ids)`` -> [users,
        items], e.g. the synthetic generator's ``ClickTruth.expected_clicks``): the best achievable
        ranking, the row the others' share of the gap is measured against (never a competitor)."""
        users = list(pd.unique(self.queries.users))
        columns = _line_columns(self.catalogue, self.target)
        scores = expected_clicks(users, self.target, [str(i) for i in self.catalogue.ids[columns]])
        row = pd.Index(users).get_indexer(self.queries.users)
        return self.score(Method(CEILING, transfer=False, learned=False, ceiling=True),
                          _in_target_columns(np.asarray(scores, np.float32), row, columns, len(self.catalogue)))

    def result(self, scored: list[tuple[Method, dict[str, np.ndarray]]]) -> ColdStartResult:
        return ColdStartResult([m for m, _ in scored], {m.name: v for m, v in scored}, self.queries.users,
                               self.groups)


def cold_start_evaluation(spec_path: str | Path, train: str | Path, valid: str | Path, test: str | Path, *,
                          target: str, runs: Mapping[str, tuple[str | Path, bool]] | None = None,
                          seed: int = 0, negatives: int = 999,
                          log: Callable[[str], None] = lambda *_: None) -> ColdStartResult:
    """Every method on ``test``'s ``target``-line users. ``runs``: name -> (a finished retrieval
    run trained on this split, whether it saw lines other than ``target``)."""
    task = ColdStartTask(spec_path, train, valid, test, target=target, negatives=negatives, log=log)
    scored = task.baselines() + [task.emcdr(seed), task.sequel(seed)]
    scored += [task.run(name, run, transfer) for name, (run, transfer) in (runs or {}).items()]
    return task.result(scored)


def _line_columns(catalogue: Catalogue, line: str) -> np.ndarray:
    return np.flatnonzero(catalogue.membership[catalogue.domains.index(line)])


def emcdr_scorer(model, spec: Spec, catalogue: Catalogue, queries: RankingQueries, seen: list[Log],
                 target: str) -> ScoreBlock:
    """Scores [q, N] of a fitted :class:`~mdrec.transfer.mapping.EMCDR` (target columns only;
    the ranking masks the other lines' items anyway). The source side is every other line's items:
    with more than two lines, EMCDR maps from all of them at once."""
    source, mine, row = _query_clicks(spec, catalogue, queries, seen, target)
    return _in_target_columns(model.score(source, mine), row, _line_columns(catalogue, target), len(catalogue))


def _query_clicks(spec: Spec, catalogue: Catalogue, queries: RankingQueries, seen: list[Log], target: str):
    """The queries' users' clicks in ``seen``: (other lines' items csr [u, N_source], the target
    line's items csr [u, N_target], each query's row [Q])."""
    target_cols = _line_columns(catalogue, target)
    source_cols = np.setdiff1d(np.arange(len(catalogue)), target_cols)
    everywhere, row = _all_clicks(spec, catalogue, queries, seen)
    users = list(pd.unique(queries.users))  # _all_clicks's rows
    mine = click_matrix(click_pairs(seen, spec, catalogue, target), users, len(catalogue))[:, target_cols]
    return everywhere[:, source_cols], mine, row


def _in_target_columns(scores: np.ndarray, row: np.ndarray, target_cols: np.ndarray, n_items: int) -> ScoreBlock:
    """A ScoreBlock placing each query's ``scores[row[q]]`` [N_target] in the catalogue's target
    columns (0 elsewhere)."""
    def score(positions: np.ndarray) -> np.ndarray:
        out = np.zeros((len(positions), n_items), np.float32)
        out[:, target_cols] = scores[row[positions]]
        return out

    return score


def _validation_users(spec: Spec, catalogue: Catalogue, logs: dict[str, Log], target: str) -> RankingQueries:
    """The queries a cold-start setting is chosen on: the validation split's cold ``target``-line
    users (all its ``target``-line users when none is cold), the training split their context."""
    valid_queries = line_queries(ranking_queries(logs["valid"], spec, catalogue, [logs["train"]]), catalogue, target)
    cold = user_groups(valid_queries, logs["train"], spec, catalogue) == "cold"
    return valid_queries.subset(cold) if cold.any() else valid_queries


def _validation_ndcg(scores: np.ndarray, row: np.ndarray, queries: RankingQueries, catalogue: Catalogue,
                     target: str) -> float:
    scorer = _in_target_columns(scores, row, _line_columns(catalogue, target), len(catalogue))
    return float(full_ranking(scorer, queries, catalogue.membership, (10,))["ndcg@10"].mean())


def _fit_emcdr(spec: Spec, catalogue: Catalogue, logs: dict[str, Log], target: str, seed: int,
               grid_points: list[dict], log: Callable[[str], None]):
    """EMCDR fitted on the training clicks, its rank and mapping chosen by the NDCG@10 of the
    validation split's cold users (:func:`_validation_users`)."""
    from mdrec.transfer.mapping import EMCDR

    pairs = click_pairs([logs["train"]], spec, catalogue)
    users = list(pd.unique(pairs["user"].to_numpy(dtype=object)))
    matrix = click_matrix(pairs, users, len(catalogue))
    target_cols = _line_columns(catalogue, target)
    source_cols = np.setdiff1d(np.arange(len(catalogue)), target_cols)
    chosen = _validation_users(spec, catalogue, logs, target)
    source, mine, row = _query_clicks(spec, catalogue, chosen, [logs["train"]], target)

    def candidates() -> Iterator[tuple[dict, object]]:
        for settings in grid_points:
            try:
                yield settings, EMCDR(**settings, seed=seed).fit(matrix[:, source_cols], matrix[:, target_cols])
            except ValueError as error:
                raise MdrecError(f"{EMCDR_NAME}: {error}", hint="the lines need users with clicks in both") from None

    return _best_on_validation(EMCDR_NAME, candidates(), lambda model: model.score(source, mine), chosen, row,
                               catalogue, target, log)


def _fit_sequel(spec: Spec, catalogue: Catalogue, logs: dict[str, Log], target: str, prior: np.ndarray, seed: int,
                grid_points: list[dict], log: Callable[[str], None]):
    """Sequel kNN fitted on the training split's events, its rank, shelf size and share chosen by
    the NDCG@10 of the validation split's cold users (:func:`_validation_users`). ``prior``: the
    target line's :func:`_exposure_prior` in training."""
    from mdrec.transfer.sequel import SequelKNN

    target_cols = _line_columns(catalogue, target)
    transitions = _transitions(logs["train"], spec, catalogue)
    chosen = _validation_users(spec, catalogue, logs, target)
    clicks, row = _all_clicks(spec, catalogue, chosen, [logs["train"]])
    default = SequelKNN()

    def candidates() -> Iterator[tuple[dict, object]]:
        widest = max(int(g.get("neighbours", default.neighbours)) for g in grid_points)
        try:  # one factorisation at the largest rank; the smaller ranks are its leading factors
            full = SequelKNN(rank=max(int(g.get("rank", default.rank)) for g in grid_points), neighbours=widest,
                             seed=seed).fit(transitions, target_cols)
        except ValueError as error:
            raise MdrecError(f"{SEQUEL_NAME}: {error}",
                             hint="the training split needs users with several events") from None
        ranked: dict[int, SequelKNN] = {}
        for settings in grid_points:
            rank = int(settings.get("rank", default.rank))
            if rank not in ranked:
                ranked[rank] = full.truncated(rank)
            model = copy.copy(ranked[rank])  # the same vectors and neighbours, its own shelf size and share
            model.neighbours = int(settings.get("neighbours", default.neighbours))
            model.share = float(settings.get("share", default.share))
            yield settings, model

    return _best_on_validation(SEQUEL_NAME, candidates(), lambda model: model.score(clicks, prior), chosen, row,
                               catalogue, target, log)


def _best_on_validation(name: str, candidates: Iterator[tuple[dict, Any]], scores: Callable[[Any], np.ndarray],
                        chosen: RankingQueries, row: np.ndarray, catalogue: Catalogue, target: str,
                        log: Callable[[str], None]) -> tuple[Any, dict]:
    """The (settings, model) of ``candidates`` whose ``scores(model)`` [users of ``chosen``,
    N_target] rank ``chosen``'s items best (NDCG@10), and its settings with every candidate's
    validation score; the first candidate when there is no validation user."""
    best, best_score, grid = None, -np.inf, []
    for settings, model in candidates:
        if not len(chosen):
            log(f"{name}: no '{target}' validation users; the first grid point is used")
            return model, {**model.settings(), "validation_grid": []}
        value = _validation_ndcg(scores(model), row, chosen, catalogue, target)
        log(f"{name} {settings}: valid cold ndcg@10 {value:.4f}")
        grid.append({**settings, "valid_ndcg@10": round(value, 5)})
        if value > best_score:
            best, best_score = model, value
    return best, {**best.settings(), "validation_grid": grid}


def _transitions(log_: Log, spec: Spec, catalogue: Catalogue):
    """:func:`~mdrec.transfer.sequel.transition_counts` of a log's events (co-clicks without time)."""
    from mdrec.transfer.sequel import transition_counts

    frame = log_.frame
    return transition_counts(frame[spec.user_id.name].to_numpy(dtype=object),
                             catalogue.index_of(item_keys(log_, spec)), frame[LABEL].to_numpy() > 0,
                             frame[TIME].to_numpy() if TIME in frame else None, len(catalogue))


def _exposure_prior(log_: Log, spec: Spec, catalogue: Catalogue, line: str) -> np.ndarray:
    """float [N_line]: each of ``line``'s items' share of the line's rows in ``log_`` (shown or
    clicked; uniform when the line has no rows)."""
    columns = _line_columns(catalogue, line)
    items = catalogue.index_of(item_keys(log_, spec))
    mine = (log_.frame[DOMAIN].to_numpy(dtype=object) == line) & (items >= 0)
    rows = np.bincount(items[mine], minlength=len(catalogue))[columns].astype(np.float64)
    return rows / rows.sum() if rows.sum() > 0 else np.full(len(columns), 1.0 / max(len(columns), 1))


def _all_clicks(spec: Spec, catalogue: Catalogue, queries: RankingQueries, seen: list[Log]):
    """The queries' users' clicks in every line of ``seen``: (binary csr [u, N], each query's row [Q])."""
    users = list(pd.unique(queries.users))
    return (click_matrix(click_pairs(seen, spec, catalogue), users, len(catalogue)),
            pd.Index(users).get_indexer(queries.users))


def run_scorer(run: str | Path, test: str | Path, catalogue: Catalogue, queries: RankingQueries,
               target: str, test_lines: set[str]) -> ScoreBlock:
    """Scores [q, N] of a finished retrieval run for ``queries``' users, in ``catalogue``'s columns
    (the run's own catalogue may hold fewer items: those score -inf). ``test_lines``: the lines
    ``test`` holds (the task has read it already)."""
    from mdrec.training.retrieval import model_scores
    from mdrec.workflows.restore import restore_for

    r = restore_for(run, _test_file_of(run, test, test_lines), need_context=True)
    own = r.model.catalogue
    seen = [r.context[n] for n in ("train", "valid") if n in r.context]
    run_queries = line_queries(ranking_queries(r.log, r.spec, own, seen), own, target)
    position = pd.Index(run_queries.users).get_indexer(queries.users)
    if (position < 0).any():
        raise MdrecError(f"the run has no '{target}' query for {int((position < 0).sum())} of the test users",
                         path=str(run), hint="score a run trained on this split, with this test file")
    scores = model_scores(r.model, r.spec, own, r.log, r.history, run_queries)
    column = own.index_of(catalogue.keys)

    def score(positions: np.ndarray) -> np.ndarray:
        theirs = scores(position[positions])
        out = np.full((len(positions), len(catalogue)), -np.inf, np.float32)
        present = column >= 0
        out[:, present] = theirs[:, column[present]]
        return out

    return score


def _test_file_of(run: str | Path, test: str | Path, test_lines: set[str]) -> Path:
    """``test``, or, for a run trained on fewer lines than ``test`` holds (the target line alone),
    the run's own test file: it holds the same target-line rows, and training checked its lines."""
    run_dir = RunDir(run).require()
    known = set(Transform.load(run_dir.transform_path).domains)
    if test_lines <= known:
        return Path(test)
    config, _ = run_dir.read_config()
    if config.test and Path(config.test).is_file():
        return Path(config.test)
    raise MdrecError(f"the run was trained on {', '.join(sorted(known))} only and {test} holds other lines",
                     path=str(run), hint="train it with --test set to this split's test rows of those lines")


def json_rows(result: ColdStartResult, seed: int, dataset: str) -> list[dict]:
    """The bench contract's JSON lines: one per method and user group."""
    table = result.table()
    kinds = {m.name: m for m in result.methods}
    rows = []
    for (method, users), values in table.iterrows():
        rows.append({"dataset": dataset, "method": method, "transfer": kinds[method].transfer,
                     "learned": kinds[method].learned, "ceiling": kinds[method].ceiling, "users": users, "seed": seed, "count": int(values["count"]),
                     **{k: round(float(values[k]), 5) for k in table.columns if k != "count"}})
    return rows

