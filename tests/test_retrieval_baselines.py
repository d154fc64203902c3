"""The retrieval sanity rows: ItemKNN and EASE read the user's clicks across lines or in the
query's line only, as their scope says; settings are searched on validation, never on test."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import DOMAIN, LABEL, TIME, Log
from mdrec.evaluation.baselines import retrieval as rb
from mdrec.evaluation.ranking import ranking_queries
from mdrec.spec import load_spec


def _log(rows):
    users, items, lines = zip(*rows)
    return Log(pd.DataFrame({"user_id": list(users), "item_id": list(items), DOMAIN: list(lines),
                             LABEL: [1] * len(rows), TIME: np.arange(len(rows))}))


def _setting(tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    # Four users bought a1 (line a) with b1 (line b); two bought a2 alone. The query user q has
    # bought only b1, in line b: across lines, b1 points at a1; within line a, q has nothing.
    train = _log([(f"u{k}", "a1", "a") for k in range(4)] + [(f"u{k}", "b1", "b") for k in range(4)]
                 + [("v0", "a2", "a"), ("v1", "a2", "a"), ("v1", "b2", "b"), ("q", "b1", "b")])
    catalogue = Catalogue(pd.DataFrame({"__item_key__": ["a1", "a2", "b1", "b2"], DOMAIN: ["a", "a", "b", "b"],
                                        "item_id": ["a1", "a2", "b1", "b2"]}), {}, ["a", "b"],
                          np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool),
                          np.array([[4, 2, 0, 0], [0, 0, 5, 1]], np.int64), "item_id")
    test = _log([("q", "a1", "a")])
    return spec, train, catalogue, test


def test_all_lines_reads_the_other_lines_clicks_and_per_line_does_not(tiny_spec_path):
    spec, train, catalogue, test = _setting(tiny_spec_path)
    fitted = {(b.kind, b.scope): b for b in rb.fit_baselines(spec, catalogue, train, valid=None)}
    queries = ranking_queries(test, spec, catalogue, seen=[train])
    for kind in ("itemknn", "ease"):
        across = fitted[kind, "all lines"].scorer(queries, [train], spec, catalogue)(np.arange(1))[0]
        assert across[0] > across[1], kind           # a1 (bought with b1) above a2
        within = fitted[kind, "per line"].scorer(queries, [train], spec, catalogue)(np.arange(1))[0]
        # No clicks of q in line a: nothing to go on but the fallback, popularity (a1: 4 clicks, a2: 2).
        assert 0 < within[1] < within[0] < rb.TIE_BREAK, kind
    # Without a validation split the defaults are used, and the report says no search ran.
    assert fitted["ease", "all lines"].settings == {"l2": 100.0}
    assert fitted["ease", "all lines"].report()["validation_grid"] == []


def test_settings_are_searched_on_validation(tiny_spec_path):
    spec, train, catalogue, test = _setting(tiny_spec_path)
    valid = _log([("q", "a1", "a"), ("v0", "b2", "b")])
    knn = rb.fit_baselines(spec, catalogue, train, valid, kinds=("itemknn",), scopes=("all lines",))[0]
    grid = knn.report()["validation_grid"]
    assert len(grid) == len(rb.GRIDS["itemknn"])
    best = max(grid, key=lambda g: g["valid_ndcg@10"])["valid_ndcg@10"]
    chosen = next(g for g in grid if {k: g[k] for k in knn.settings} == knn.settings)
    assert chosen["valid_ndcg@10"] == best
    # Chosen settings given (a finished run's metrics.json): no search, exactly those settings.
    again = rb.fit_baselines(spec, catalogue, train, valid, kinds=("itemknn",), scopes=("all lines",),
                             chosen={knn.name: {"neighbours": 20, "shrink": 0.0}})[0]
    assert again.settings == {"neighbours": 20, "shrink": 0.0} and again.grid == []
    # With the grid they won (an earlier run on the same split): kept as that run recorded it.
    reused = rb.fit_baselines(spec, catalogue, train, valid, kinds=("itemknn",), scopes=("all lines",),
                              chosen={knn.name: knn.settings}, grids={knn.name: grid})[0]
    assert reused.settings == knn.settings and reused.report()["validation_grid"] == grid


def test_ladder_walk_stops_at_the_peak_without_trying_every_point():
    tried = []

    def score(index: int) -> float:
        tried.append(index)
        return -abs(index - 5)

    rb._walk(score, 3, 8)
    assert max(set(tried), key=score) == 5
    assert set(tried) == {2, 3, 4, 5, 6}    # 0, 1 and 7 are never fitted
