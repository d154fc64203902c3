"""Train/valid/test splits of a raw log. Each returns three index arrays into the frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError


def time_split(times: np.ndarray, valid_fraction: float = 0.1, test_fraction: float = 0.1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global time cut: the oldest events train, the next validate, the newest test.

    Events at the cut's exact second all go to the later split, so no test event is older than a
    training event.
    """
    _check_fractions(valid_fraction, test_fraction)
    times = np.asarray(times)
    valid_cut = np.quantile(times, 1 - valid_fraction - test_fraction, method="lower")
    test_cut = np.quantile(times, 1 - test_fraction, method="lower")
    train = np.flatnonzero(times < valid_cut)
    valid = np.flatnonzero((times >= valid_cut) & (times < test_cut))
    test = np.flatnonzero(times >= test_cut)
    return train, valid, test


def leave_last_out(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: the last event tests, the one before validates, the rest trains.

    Users with fewer than three events keep all their events in training.
    """
    frame = pd.DataFrame({"user": users, "time": np.asarray(times), "row": np.arange(len(users))})
    frame = frame.sort_values(["user", "time", "row"], kind="stable")
    rank_from_end = frame.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    counts = frame.groupby("user", sort=False)["row"].transform("size").to_numpy()
    rows = frame["row"].to_numpy()
    eligible = counts >= 3
    test = np.sort(rows[eligible & (rank_from_end == 0)])
    valid = np.sort(rows[eligible & (rank_from_end == 1)])
    train = np.sort(rows[~eligible | (rank_from_end >= 2)])
    return train, valid, test


def random_split(users: np.ndarray, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded per-user random split for logs without time; every user keeps a training row."""
    _check_fractions(valid_fraction, test_fraction)
    split = stratified_random_split(users, (1 - valid_fraction - test_fraction, valid_fraction, test_fraction),
                                    np.random.default_rng(seed))
    return tuple(np.flatnonzero(split == code) for code in (0, 1, 2))


def stratified_random_split(groups: np.ndarray, fractions: tuple[float, float, float],
                            rng: np.random.Generator) -> np.ndarray:
    """Per-group random split with the exact expected fractions: 0 train, 1 valid, 2 test per row.

    Rows are shuffled within their group and cut at the fraction boundaries with a random phase per
    group (systematic sampling), so a group of n rows gets floor or ceil of n * fraction rows in each
    split, n * fraction on average, even for small groups (a plain ``floor`` rule would give no
    validation row to any user with fewer than 10 rows). Every group keeps at least one training row.
    """
    codes = pd.factorize(np.asarray(groups))[0]
    n = len(codes)
    split = np.zeros(n, dtype=np.int8)
    if n == 0:
        return split
    sizes = np.bincount(codes)
    order = np.lexsort((rng.random(n), codes))  # by group, random within group
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    phase = rng.random(len(sizes))
    position = (rank + phase[codes]) / sizes[codes]  # uniform-ish in [0, 1) within each group
    split[position >= fractions[0]] = 1
    split[position >= fractions[0] + fractions[1]] = 2
    split[rank == 0] = 0  # only matters for one-row groups: their row always trains
    return split


def cold_item_split(item_keys: np.ndarray, parts: tuple[np.ndarray, np.ndarray, np.ndarray], share: float,
                    seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Hold a seeded random ``share`` of the items out of training entirely (cold items).

    ``parts``: (train, valid, test) row indices of a base split; ``item_keys``: each row's item
    (its embedding-table key). Each held-out item goes to validation or test at random (in
    proportion to their sizes) with all of its rows, so no row of it is left in training. Returns
    ((train, valid, test) sorted row indices, the held-out item keys, sorted).
    """
    if not 0.0 < share < 1.0:
        raise MdrecError(f"the cold item share must be in (0, 1), got {share}",
                         hint="e.g. 0.1 holds a tenth of the items out of training")
    keys = np.asarray(item_keys, dtype=object)
    items = np.array(sorted(set(keys[keys != ""].tolist())), dtype=object)
    count = int(round(share * len(items)))
    if count == 0:
        raise MdrecError(f"a cold item share of {share} of {len(items)} items holds out no item",
                         hint="raise the share")
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(items, count, replace=False))
    train, valid, test = parts
    p_valid = len(valid) / max(len(valid) + len(test), 1) if len(valid) + len(test) else 0.5
    to_valid = set(cold[rng.random(count) < p_valid].tolist())
    is_cold = pd.Index(cold).get_indexer(keys) >= 0
    rows = np.flatnonzero(is_cold)
    row_to_valid = np.fromiter((k in to_valid for k in keys[rows]), bool, len(rows))
    keep = lambda index: index[~is_cold[index]]  # noqa: E731
    out = (np.sort(keep(np.asarray(train))),
           np.sort(np.concatenate([keep(np.asarray(valid)), rows[row_to_valid]])),
           np.sort(np.concatenate([keep(np.asarray(test)), rows[~row_to_valid]])))
    return out, cold


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise MdrecError(f"split fractions valid={valid_fraction}, test={test_fraction} must be in [0, 1) "
                         "and leave some rows for training")


def split_files(spec_path, data, out, *, by: str = "time", valid_fraction: float = 0.1,
                test_fraction: float = 0.1, seed: int = 0, cold_items: float = 0.0) -> dict[str, tuple[int, Path]]:
    """Validate ``data`` against the spec, split it and write train/valid/test.parquet to ``out``.

    Rows are written as they were read (raw columns), so the files feed `mdrec train` directly.
    ``cold_items`` > 0 then holds that share of the items out of training (:func:`cold_item_split`,
    seeded by ``seed``) and writes their keys to cold_items.txt (entry "cold_items": (count, path)).
    """
    from mdrec.data.io import read_file, table_files
    from mdrec.data.log import TIME, load_log
    from mdrec.fileio import atomic_write_table
    from mdrec.spec import load_spec

    spec = load_spec(spec_path)
    if by in ("time", "leave_last_out") and spec.time is None:
        raise MdrecError(f"splitting by {by} needs the spec's time column", path=spec.source,
                         hint="add `time: {column: ...}` to the spec or split at random")
    log = load_log(data, spec)  # every row is checked before anything is written
    raw = pd.concat([read_file(f) for f in table_files(data)], ignore_index=True)
    users = log.frame[spec.user_id.name].to_numpy(dtype=object)
    if by == "time":
        parts = time_split(log.frame[TIME].to_numpy(), valid_fraction, test_fraction)
    elif by == "leave_last_out":
        parts = leave_last_out(users, log.frame[TIME].to_numpy())
    elif by == "random":
        parts = random_split(users, valid_fraction, test_fraction, seed)
    else:
        raise MdrecError(f"unknown split '{by}'; use time, leave_last_out or random")
    cold = None
    if cold_items:
        from mdrec.data.catalogue import item_keys

        parts, cold = cold_item_split(item_keys(log, spec), parts, cold_items, seed)
    out = Path(out)
    written = {}
    for name, index in zip(("train", "valid", "test"), parts):
        path = atomic_write_table(raw.iloc[np.sort(index)].reset_index(drop=True), out / f"{name}.parquet")
        written[name] = (len(index), path)
    if cold is not None:
        from mdrec.fileio import atomic_write_text

        written["cold_items"] = (len(cold), atomic_write_text(out / "cold_items.txt",
                                                               "".join(f"{k}\n" for k in cold)))
    return written
