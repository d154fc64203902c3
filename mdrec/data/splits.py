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


def cold_user_split(users: np.ndarray, lines: np.ndarray, clicks: np.ndarray,
                    parts: tuple[np.ndarray, np.ndarray, np.ndarray], *, source: str, target: str,
                    fraction: float, seed: int = 0
                    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """Make a seeded ``fraction`` of the users known to both lines cold-start users of ``target``.

    users, lines, clicks: per row [N] (clicks > 0 marks a positive); ``parts``: the (train, valid,
    test) row indices of a base split, which every other row keeps. Candidates are the users with
    a click in ``source`` and a click in ``target`` (a user without source clicks has nothing to
    transfer; one without target clicks has nothing to test). Each chosen user loses every
    ``target`` row from training; half of the chosen users (seeded) are validation users, whose
    target rows all go to validation, the other half test users, whose target rows all go to test
    (users, not events, are split, as CDRIB's protocol does, so no cold test user is tuned on).
    Their rows in every other line all train: that history is what transfer reads. Returns
    ((train, valid, test) sorted row indices, the cold validation users, the cold test users),
    users sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise MdrecError(f"the cold user fraction must be in (0, 1), got {fraction}",
                         hint="e.g. 0.1 makes a tenth of the shared users cold-start users of the target line")
    users = np.asarray(users, dtype=object)
    lines = np.asarray(lines, dtype=object)
    positive = np.asarray(clicks) > 0
    present = set(lines.tolist())
    for role, line in (("source", source), ("target", target)):
        if line not in present:
            raise MdrecError(f"the {role} line '{line}' has no rows in the log",
                             hint=f"lines in the log: {', '.join(sorted(map(str, present)))}")
    if source == target:
        raise MdrecError(f"the source and target lines are both '{source}'", hint="name two different lines")
    in_source = set(users[positive & (lines == source)].tolist())
    in_target = set(users[positive & (lines == target)].tolist())
    candidates = np.array(sorted(in_source & in_target, key=str), dtype=object)
    count = int(round(fraction * len(candidates)))
    if count < 2:
        raise MdrecError(f"a cold user fraction of {fraction} of the {len(candidates)} users with clicks in both "
                         f"'{source}' and '{target}' gives {count} cold users; validation and test need one each",
                         hint="raise the fraction, or check that the two lines share user ids")
    rng = np.random.default_rng(seed)
    cold = candidates[rng.permutation(len(candidates))[:count]]
    valid_users = np.array(sorted(cold[: count // 2], key=str), dtype=object)
    test_users = np.array(sorted(cold[count // 2:], key=str), dtype=object)
    is_cold = pd.Index(cold).get_indexer(users) >= 0
    cold_target = is_cold & (lines == target)
    to_valid = cold_target & (pd.Index(valid_users).get_indexer(users) >= 0)
    to_test = cold_target & ~to_valid
    cold_source = is_cold & (lines != target)
    moved = cold_target | cold_source
    train, valid, test = (np.asarray(p) for p in parts)
    out = (np.sort(np.concatenate([train[~moved[train]], np.flatnonzero(cold_source)])),
           np.sort(np.concatenate([valid[~moved[valid]], np.flatnonzero(to_valid)])),
           np.sort(np.concatenate([test[~moved[test]], np.flatnonzero(to_test)])))
    return out, valid_users, test_users


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise MdrecError(f"split fractions valid={valid_fraction}, test={test_fraction} must be in [0, 1) "
                         "and leave some rows for training")


SPLITS = ("time", "leave_last_out", "random", "cold_users")


def split_files(spec_path, data, out, *, by: str = "time", valid_fraction: float = 0.1,
                test_fraction: float = 0.1, seed: int = 0, cold_items: float = 0.0,
                source_line: str | None = None, target_line: str | None = None,
                cold_fraction: float = 0.1) -> dict[str, tuple[int, Path]]:
    """Validate ``data`` against the spec, split it and write train/valid/test.parquet to ``out``.

    Rows are written as they were read (raw columns), so the files feed `mdrec train` directly.
    ``cold_items`` > 0 then holds that share of the items out of training (:func:`cold_item_split`,
    seeded by ``seed``) and writes their keys to cold_items.txt (entry "cold_items": (count, path)).
    ``by="cold_users"``: a random split per (user, line) for everyone, then ``cold_fraction`` of the
    users with clicks in ``source_line`` and ``target_line`` become cold-start users of the target
    line (:func:`cold_user_split`); their ids go to cold_users.tsv (user, split).
    """
    from mdrec.data.io import read_file, table_files
    from mdrec.data.log import DOMAIN, LABEL, TIME, load_log
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
    elif by == "cold_users":
        if not source_line or not target_line:
            raise MdrecError("splitting by cold_users needs the source and target lines",
                             hint="pass --source-line LINE --target-line LINE (the line that knows the users, "
                                  "and the new line whose cold-start users are held out)")
        lines = log.frame[DOMAIN].to_numpy(dtype=object)
        base = random_split(users.astype(str) + "\x1f" + lines.astype(str), valid_fraction, test_fraction, seed)
        parts, cold_valid, cold_test = cold_user_split(users, lines, log.frame[LABEL].to_numpy(), base,
                                                       source=source_line, target=target_line,
                                                       fraction=cold_fraction, seed=seed)
    else:
        raise MdrecError(f"unknown split '{by}'; use {', '.join(SPLITS)}")
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
    if by == "cold_users":
        from mdrec.fileio import atomic_write_text

        listing = "".join(f"{u}\tvalid\n" for u in cold_valid) + "".join(f"{u}\ttest\n" for u in cold_test)
        written["cold_users"] = (len(cold_valid) + len(cold_test),
                                 atomic_write_text(out / COLD_USERS, "user\tsplit\n" + listing))
    return written


COLD_USERS = "cold_users.tsv"
