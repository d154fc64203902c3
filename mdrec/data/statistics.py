"""Leak-free statistics of the training clicks, written beside a split as numeric features.

For each key (the user, the item, the user within a line) and each value (the label, and the
column the label is derived from when the spec's label has a ``positive_if`` rule, e.g. a 1-5
rating): the key's mean over training rows, smoothed toward the training mean with ``prior``
pseudo-rows, and log(1 + the key's training rows).

A training row never sees its own label: with a time column its statistics come from the training
rows strictly earlier than it (same key, earlier timestamp: what serving knows at that moment);
without one, from the training rows of the other ``folds`` (a seeded K-fold). Validation and test
rows, like a serving request, read the statistics of every training row.

Users the training rows never saw: their query rows carry the prior (the training mean, log rows
0). A training row almost never does (only a user's first event), so a model learns nothing for
those values, and on a log where most validation users are new (MovieLens-1M's time split: 76% of
its rows) early stopping and calibration are fitted on inputs training never showed. A seeded
``cold_share`` of the training rows therefore get an unseen user's values in every user column
(user and user × line), by default the share of validation rows whose user has no training row:
STAR on MovieLens-1M, seed 0: test AUC 0.7574 -> 0.7674, calibration (adult) 1.21 -> 1.11.

Why: on Douban (ids only, label rating >= 4) the CTR models' user and item biases learn from the
0/1 label alone; the graded rating the label is cut from carries more. With these columns STAR
scored test AUC 0.7827 ± 0.0009 over 3 seeds against 0.7702 without (bench/ctr_models.py
--statistics). On the time-split MovieLens-1M and synthetic logs they did not help (README).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdrec.data.columns import DOMAIN, LABEL, TIME
from mdrec.data.prepare.prepared import SPLITS
from mdrec.errors import MdrecError
from mdrec.spec import Spec

PREFIX = "stat_"


@dataclass(frozen=True)
class StatisticsSettings:
    """How the training rows' statistics are made: ``folds`` (no time column), the smoothing
    ``prior`` (pseudo-rows at the training mean) and the fold ``seed``."""

    folds: int = 5
    prior: float = 5.0
    seed: int = 0
    cold_share: float | None = None  # None: the share of validation rows whose user has no training row

    def check(self) -> None:
        if self.cold_share is not None and not 0.0 <= self.cold_share <= 1.0:
            raise MdrecError(f"--cold-share {self.cold_share}: a share of the training rows, between 0 and 1",
                             hint="leave it out to use the share of validation rows from users without "
                                  "training rows, or give 0 to keep every training row's own user statistics")
        if self.folds < 2:
            raise MdrecError(f"--folds {self.folds}: at least 2 folds are needed (a row's statistics "
                             "come from the other folds)", hint="use --folds 5")
        if not self.prior > 0:
            raise MdrecError(f"--prior {self.prior}: the smoothing must be positive (pseudo-rows at the "
                             "training mean)", hint="use --prior 5")


def statistic_keys(spec: Spec) -> dict[str, tuple[str, ...]]:
    """name -> the canonical log columns of the key: user, item, and user × line for a spec with
    more than one line."""
    if spec.user_id is None or spec.item_id is None:
        raise MdrecError("statistics need a feature with role user_id and one with role item_id",
                         path=spec.source, hint="add both id features to the spec's features")
    keys: dict[str, tuple[str, ...]] = {"user": (spec.user_id.name,), "item": (spec.item_id.name,)}
    if spec.domain.column:
        keys["user_line"] = (spec.user_id.name, DOMAIN)
    return keys


def value_names(spec: Spec) -> list[str]:
    """The averaged values: ``click`` (the 0/1 label) and the label's source column when a
    ``positive_if`` rule cuts the label from it."""
    return ["click"] + ([spec.label.column] if spec.label.positive_if is not None else [])


def column_names(spec: Spec) -> list[tuple[str, str]]:
    """(column, role) of every statistic, in the order written: per key its means, then its rows."""
    out = []
    for key in statistic_keys(spec):
        role = "item" if key == "item" else "user"
        out += [(f"{PREFIX}{key}_{value}_mean", role) for value in value_names(spec)]
        out.append((f"{PREFIX}{key}_log_rows", role))
    return out


def _codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    joined = frame[columns[0]].astype(str)
    for column in columns[1:]:
        joined = joined + "\x1f" + frame[column].astype(str)
    codes: np.ndarray = joined.to_numpy(dtype=object)
    return codes


def training_sums(codes: np.ndarray, values: np.ndarray, time: np.ndarray | None, folds: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ``values``, rows) per training row over the rows it may see: with ``time``, the rows
    of its key strictly earlier; otherwise the rows of its key in the other ``folds``."""
    unique, code = np.unique(codes, return_inverse=True)
    n = len(code)
    if time is not None:
        order = np.lexsort((time, code))
        c, t, v = code[order], time[order], values[order]
        cumulative = np.concatenate([[0.0], np.cumsum(v)])
        new_key = np.r_[True, c[1:] != c[:-1]]
        new_moment = new_key | np.r_[True, t[1:] != t[:-1]]
        positions = np.arange(n)
        key_start = np.maximum.accumulate(np.where(new_key, positions, 0))
        moment_start = np.maximum.accumulate(np.where(new_moment, positions, 0))
        sums, rows = np.empty(n), np.empty(n)
        sums[order] = cumulative[moment_start] - cumulative[key_start]
        rows[order] = moment_start - key_start
        return sums, rows
    assert folds is not None
    cells = (int(folds.max()) + 1) * len(unique)
    index = folds * len(unique) + code  # (fold, key) of each row
    in_fold, in_fold_rows = np.bincount(index, values, cells), np.bincount(index, None, cells)
    total, count = np.bincount(code, values, len(unique)), np.bincount(code, None, len(unique))
    return total[code] - in_fold[index], count[code] - in_fold_rows[index]


def query_sums(train_codes: np.ndarray, values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ``values``, rows) over every training row of each query row's key (0, 0 for a key
    without training rows)."""
    sums = pd.Series(values).groupby(train_codes).agg(["sum", "count"])
    looked_up = sums.reindex(codes)
    return looked_up["sum"].fillna(0.0).to_numpy(), looked_up["count"].fillna(0.0).to_numpy()


def cold_share(spec: Spec, train: pd.DataFrame, others: dict[str, pd.DataFrame], settings: StatisticsSettings
               ) -> float:
    """``settings.cold_share``, or the share of ``others["valid"]``'s rows whose user has no training
    row (0 without a validation split)."""
    if settings.cold_share is not None:
        return settings.cold_share
    valid = others.get("valid")
    if valid is None or not len(valid):
        return 0.0
    user = statistic_keys(spec)["user"][0]
    return float((~valid[user].isin(train[user])).mean())


def compute(spec: Spec, train: pd.DataFrame, others: dict[str, pd.DataFrame], graded: dict[str, np.ndarray],
            settings: StatisticsSettings) -> dict[str, pd.DataFrame]:
    """The statistics columns of every split. ``train`` and ``others`` are canonical log frames
    (:class:`mdrec.data.log.Log`); ``graded``: split -> the label's source values (float), when the
    spec has a ``positive_if`` rule. The training rows of :func:`cold_share` read as an unseen user's."""
    settings.check()
    # Its own generator: the folds' draws (and so every other row's numbers) do not move with the share.
    as_unseen = np.random.default_rng([settings.seed, 1]).random(len(train)) < cold_share(spec, train, others, settings)
    time = train[TIME].to_numpy() if spec.time else None
    folds = None if time is not None else \
        np.random.default_rng(settings.seed).permutation(len(train)) % settings.folds
    values = {"click": {name: frame[LABEL].to_numpy(dtype=float) for name, frame in [("train", train), *others.items()]}}
    if spec.label.positive_if is not None:
        values[spec.label.column] = graded
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in ["train", *others]}
    for key, columns in statistic_keys(spec).items():
        train_codes = _codes(train, columns)
        other_codes = {name: _codes(frame, columns) for name, frame in others.items()}
        for value, per_split in values.items():
            y = per_split["train"]
            prior_mean = float(y.mean()) if len(y) else 0.0
            sums, rows = training_sums(train_codes, y, time, folds)
            if key != "item":  # the user's keys: the rows drawn above know nothing of their user
                sums, rows = np.where(as_unseen, 0.0, sums), np.where(as_unseen, 0.0, rows)
            found = {"train": (sums, rows)} | {name: query_sums(train_codes, y, codes)
                                                for name, codes in other_codes.items()}
            for name, (s, r) in found.items():
                out[name][f"{PREFIX}{key}_{value}_mean"] = (s + settings.prior * prior_mean) / (r + settings.prior)
                if value == "click":  # the rows are the same for every value
                    out[name][f"{PREFIX}{key}_log_rows"] = np.log1p(r)
    order = [column for column, _ in column_names(spec)]
    return {name: pd.DataFrame(columns)[order] for name, columns in out.items()}


def _split_file(data: Path, name: str) -> Path:
    found = [p for p in sorted(data.glob(f"{name}.*")) if p.suffix in (".parquet", ".csv", ".tsv")]
    if not found:
        raise MdrecError(f"no {name} split ({name}.parquet, .csv or .tsv)", path=str(data),
                         hint="point --data at a folder of `mdrec data split` or `mdrec data prepare` "
                              "(train/valid/test.parquet)")
    return found[0]


def write_statistics(spec_path: str | Path, data: str | Path, out: str | Path,
                     settings: StatisticsSettings) -> dict[str, Any]:
    """Read the split in ``data``, write it to ``out`` with the statistics columns added (every
    other file of ``data`` copied), ``spec.yaml`` (the spec with the columns as numeric features)
    and ``statistics.json``. The folder appears whole or not at all."""
    from mdrec.data.io import read_file
    from mdrec.data.log import canonicalize
    from mdrec.data.parsed_logs import file_digest
    from mdrec.fileio import atomic_directory, atomic_write_json
    from mdrec.spec import load_spec, parse_spec

    settings.check()
    spec = load_spec(spec_path)
    data, out = Path(data), Path(out)
    if out.resolve() == data.resolve():
        raise MdrecError(f"--out {out} is the input folder", hint="write the statistics to a new folder")
    files = {name: _split_file(data, name) for name in SPLITS}
    raw = {name: read_file(path) for name, path in files.items()}
    for name, frame in raw.items():
        clash = [column for column, _ in column_names(spec) if column in frame.columns]
        if clash:
            raise MdrecError(f"already has the column '{clash[0]}' this command writes",
                             path=str(files[name]), hint="run it on the split without statistics")
    logs = {name: canonicalize(frame, spec, source=str(files[name])).frame for name, frame in raw.items()}
    graded = {name: pd.to_numeric(frame[spec.label.column]).to_numpy(dtype=float) for name, frame in raw.items()} \
        if spec.label.positive_if is not None else {}
    others = {name: logs[name] for name in SPLITS[1:]}
    share = cold_share(spec, logs["train"], others, settings)
    columns = compute(spec, logs["train"], others, graded, replace(settings, cold_share=share))
    raw_spec = spec.to_dict()
    raw_spec["features"] += [{"name": column, "role": role, "type": "numeric"} for column, role in column_names(spec)]
    new_spec = parse_spec(raw_spec, source=f"{spec.source} with statistics")  # checked as any spec is

    with atomic_directory(out) as tmp:
        for name, frame in raw.items():
            pd.concat([frame.reset_index(drop=True), columns[name]], axis=1).to_parquet(
                tmp / f"{name}.parquet", index=False)
        for extra in sorted(data.iterdir()):
            if extra.is_file() and extra not in files.values():
                shutil.copy2(extra, tmp / extra.name)
        (tmp / "spec.yaml").write_text(
            f"# {spec.source} with the statistics of `mdrec data statistics` as numeric features\n" + new_spec.dump())
        summary = {"spec": str(spec.source), "data": str(data), "mode": "earlier rows" if spec.time else "other folds",
                   "folds": None if spec.time else settings.folds, "prior": settings.prior, "seed": settings.seed,
                   "cold_share": share, "cold_share_from": "--cold-share" if settings.cold_share is not None
                   else "validation rows from users without training rows",
                   "columns": [column for column, _ in column_names(spec)],
                   "inputs": {name: {"file": str(path), "rows": len(raw[name]), "blake2b": file_digest(path)}
                              for name, path in files.items()}}
        atomic_write_json(tmp / "statistics.json", summary)
    return summary
