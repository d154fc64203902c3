"""The CTR sanity rows, fitted on the training split with their settings chosen on validation:
the smoothed user+item mean and the first-order logistic model over user, item and line, and,
when the click is cut from a graded column, that logistic model fitted on every grade threshold
(the sanity row of a model trained on every grade: the same signal, no network).

A run records each row's settings in metrics.json; ``mdrec evaluate`` and ``mdrec compare`` refit
the rows on the run's training file with those settings, so every table of a run shows the same
baselines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from mdrec.data.grades import GradeLevels
from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.evaluation.baselines.logistic import STRENGTHS, FirstOrderLogistic
from mdrec.evaluation.baselines.mean import MeanBaseline
from mdrec.spec import Spec

MEAN = "baseline: user+item mean (smoothed)"
LOGISTIC = "baseline: first-order logistic (user, item, line)"
GRADED = "baseline: first-order logistic on every grade"
MAX_LOGISTIC_ROWS = 20_000_000  # above this the logistic row is skipped (ids of every row in memory)

Ids = tuple  # (users, items, lines, labels), arrays [N]; a training chunk may add the rows' grades


def ctr_ids(log: Log, spec: Spec, *, grades: bool = False) -> Ids:
    """The (users, items, lines, labels) arrays a CTR baseline reads from a log; with ``grades``
    the rows' grades as a fifth (the training chunk of a graded run)."""
    frame = log.frame
    ids = (frame[spec.user_id.name].to_numpy(dtype=object), frame[spec.item_id.name].to_numpy(dtype=object),
           frame[DOMAIN].to_numpy(dtype=object), frame[LABEL].to_numpy())
    return (*ids, log.grades) if grades else ids


@dataclass
class CtrBaseline:
    """name: the table label; predict(users, items, lines) -> probabilities [N]; settings: what
    was chosen; grid: each tried setting's validation AUC."""

    name: str
    predict: Callable[..., np.ndarray]
    settings: dict
    grid: dict = field(default_factory=dict)
    skipped: str | None = None
    note: str | None = None

    def report(self) -> dict:
        out = {"settings": self.settings, "validation_auc": {f"{k:g}": round(v, 5) for k, v in self.grid.items()}}
        for key in ("skipped", "note"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def fit_ctr_baselines(train_chunks: Iterable[Ids], valid: Ids | None = None,
                      chosen: dict[str, dict] | None = None, *, levels: GradeLevels | None = None
                      ) -> list[CtrBaseline]:
    """The rows from (users, items, lines, labels) chunks of the training split; settings from
    ``chosen`` (name -> settings) when given, else searched on ``valid``, else the defaults.
    ``levels``: the label's grade levels; the chunks then carry each row's grade as a fifth array
    and the graded logistic row is added."""
    chosen = chosen or {}
    kept: list[tuple] = []
    rows = 0

    def ids_only():
        nonlocal rows
        for chunk in train_chunks:
            users, items, lines, labels = chunk[:4]
            rows += len(labels)
            if rows <= MAX_LOGISTIC_ROWS:
                kept.append((np.asarray(users, dtype=object), np.asarray(items, dtype=object),
                             np.asarray(lines, dtype=object), np.asarray(labels),
                             chunk[4] if len(chunk) > 4 else None))
            yield users, items, labels

    mean = MeanBaseline.fit_chunks(ids_only())
    grid: dict = {}
    if MEAN in chosen:
        mean = mean.with_alpha(chosen[MEAN]["alpha"])
    elif valid is not None:
        mean, grid = mean.choose_alpha(valid[0], valid[1], valid[3])
    out = [CtrBaseline(MEAN, lambda u, i, _lines: mean.predict(u, i), {"alpha": mean.alpha}, grid)]
    names = [LOGISTIC] + ([GRADED] if levels is not None else [])

    def skipped(why: str) -> list[CtrBaseline]:
        return out + [_skipped_row(name, why) for name in names]

    if rows > MAX_LOGISTIC_ROWS:
        return skipped(f"{rows:,} training rows, more than the {MAX_LOGISTIC_ROWS:,} the logistic row holds in memory")
    train = tuple(np.concatenate([part[k] for part in kept]) for k in range(4))
    if len(np.unique(train[3])) < 2:
        return skipped("the training labels have one class")
    out.append(_logistic_row(LOGISTIC, train, valid, chosen))
    click_strength = out[-1].settings["strength"]
    if levels is not None:
        why, stacked = None, rows * levels.num_levels  # the graded fit holds each row once per threshold
        if any(part[4] is None for part in kept):
            why = "the training rows carry no grades"
        elif stacked > MAX_LOGISTIC_ROWS:
            why = (f"{stacked:,} stacked rows (one per row and grade threshold), more than the "
                   f"{MAX_LOGISTIC_ROWS:,} the logistic row holds in memory")
        if why:
            out.append(_skipped_row(GRADED, why))
        else:
            grades = np.concatenate([part[4] for part in kept])
            out.append(_logistic_row(GRADED, train, valid, chosen, strengths=_near(click_strength),
                                     grades=grades, levels=levels))
    return out


def _skipped_row(name: str, why: str) -> CtrBaseline:
    """A row that could not be fitted: NaN predictions, and the reason in the table."""
    return CtrBaseline(name, lambda u, i, d: np.full(len(u), np.nan), {}, skipped=why)


def _near(strength: float) -> tuple[float, ...]:
    """The strengths of STRENGTHS within one step of ``strength`` (all of them for another value).
    The graded row searches these around the click row's choice: the same id weights fitted on a
    richer label peaked at the click's strength or one step below it (MovieLens-1M 0.3 and 0.3,
    Douban 3 and 1), and each of its fits costs a fit per threshold."""
    if strength not in STRENGTHS:
        return STRENGTHS
    i = STRENGTHS.index(strength)
    return STRENGTHS[max(i - 1, 0):i + 2]


def _logistic_row(name: str, train: Ids, valid: Ids | None, chosen: dict[str, dict],
                  strengths: tuple[float, ...] = STRENGTHS, **graded) -> CtrBaseline:
    """A first-order logistic row (``graded``: FirstOrderLogistic.fit's grades and levels): its
    strength from ``chosen``, else searched on ``valid`` among ``strengths``, else the default."""
    grid: dict = {}
    if name in chosen:
        logistic = FirstOrderLogistic(chosen[name]["strength"]).fit(*train, **graded)
    elif valid is not None and len(np.unique(valid[3])) == 2:
        logistic, grid = FirstOrderLogistic.choose(train, valid, strengths, **graded)
    else:
        logistic = FirstOrderLogistic().fit(*train, **graded)
    return CtrBaseline(name, logistic.predict, {"strength": logistic.strength}, grid,
                       note=None if logistic.converged else f"lbfgs stopped at {logistic.max_iter} iterations")
