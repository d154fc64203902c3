"""Behaviour sequences for pretraining, read from a click log.

Per user: the clicked items (label 1) of the kept business lines, ordered by the spec's time
column (file order without one; ties keep file order), oldest first. Items are the item table's
keys (``domain/item`` for ``scope: domain`` ids). The item vocabulary is every item of these
sequences, most frequent first (ties by id), so row 2 + k of the encoder's table is the k-th most
clicked item (the order a log-uniform negative sampler assumes).

Held-out next items (:func:`held_out_queries`):
  validation, leave_last_out  (no --valid) each user with two or more clicks holds out the last
                  one; the encoder trains on the rest, and the query is the user's remaining sequence.
  validation, valid_log       (--valid LOG) each user's first click in LOG (same lines) is the
                  target and the user's whole training sequence the query.
  test            (--test LOG) each user's first click in LOG is the target; the query is everything
                  before it: the training sequence plus the validation events (the held-out last
                  click, or the user's clicks in --valid), as the published protocol reads it.
In all, the user's earlier items are removed from the ranking; a target the user already clicked
is skipped (counted), and a target outside the vocabulary stays a miss (counted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mdrec.data.io import table_files
from mdrec.data.log import DOMAIN, LABEL, SINGLE_DOMAIN, TIME, Log, load_log
from mdrec.data.transform import lookup_keys
from mdrec.errors import MdrecError
from mdrec.spec import Spec

PREPARED_NAMES = ("train.parquet", "train.csv", "train.tsv", "train.csv.gz", "train.tsv.gz")


def resolve_source(path: str | Path) -> Path:
    """A log file, a folder of shards, or a prepared folder (``mdrec data synth`` / ``prepare``
    output): then its training split, train.parquet (never its log + splits together)."""
    path = Path(path)
    if path.is_dir():
        for name in PREPARED_NAMES:
            if (path / name).is_file():
                return path / name
    table_files(path)  # a missing path or a folder without data fails here, with its message
    return path


@dataclass
class SourceData:
    """The kept clicks of a log: ``sequences`` user -> items (all of them, oldest first) and
    ``times`` user -> unix seconds (None without a time column); ``attributes`` name -> item ->
    value (the most frequent value of the item's rows in the kept lines)."""

    path: str
    domains: list[str]
    sequences: dict[str, list[str]]
    times: dict[str, list[int]] | None
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: int = 0
    clicks: int = 0


def check_attributes(spec: Spec, attributes: Sequence[str]) -> list[str]:
    """``--attributes`` must name item features of type categorical (one value per item)."""
    candidates = [f.name for f in spec.features if f.role == "item" and f.type == "categorical"]
    out = []
    for name in attributes:
        try:
            feature = spec.feature(name)
        except KeyError:
            raise MdrecError(f"--attributes '{name}' is not a feature of spec '{spec.name}'", path=spec.source,
                             hint=(f"use an item categorical feature: {', '.join(candidates)}" if candidates else
                                   "this spec has no item categorical feature: drop --attributes")) from None
        if feature.role != "item" or feature.type != "categorical":
            raise MdrecError(f"--attributes '{name}' is a {feature.role} feature of type {feature.type}; an "
                             "attribute is one categorical value per item", path=spec.source,
                             hint=(f"use an item categorical feature: {', '.join(candidates)}" if candidates else
                                   "this spec has no item categorical feature: drop --attributes"))
        out.append(name)
    return out


def select_domains(log: Log, spec: Spec, domains: Sequence[str] | None, source: str) -> tuple[Log, list[str]]:
    """The rows of ``domains`` (all lines when None or empty); unknown names fail with the list."""
    present = sorted(pd.unique(log.frame[DOMAIN].to_numpy(dtype=object)).tolist())
    if not domains:
        return log, present
    if not spec.domain.column:
        raise MdrecError(f"--domains {', '.join(domains)}: spec '{spec.name}' has no domain column, so the log "
                         "is one line", path=spec.source, hint="drop --domains")
    known = sorted(set(present) | set(spec.domain.values or ()))
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise MdrecError(f"--domains {', '.join(repr(d) for d in unknown)}: no such business line in "
                         f"column '{spec.domain.column}'; the lines are {', '.join(known)}", path=source,
                         hint=f"pick from {', '.join(known)}, e.g. --domains {known[0]}")
    keep = np.isin(log.frame[DOMAIN].to_numpy(dtype=object), np.asarray(list(domains), dtype=object))
    return log.take(np.flatnonzero(keep)), list(domains)


def click_table(log: Log, spec: Spec) -> pd.DataFrame:
    """The clicks of ``log`` as (user, item key, time, row), ordered by user, then time, then row."""
    item = spec.item_id
    frame = log.frame
    clicked = frame[LABEL].to_numpy() == 1
    table = pd.DataFrame({
        "user": frame[spec.user_id.name].to_numpy(dtype=object),
        "item": lookup_keys(frame[item.name].to_numpy(dtype=object), item, frame[DOMAIN].to_numpy(dtype=object)),
        "time": frame[TIME].to_numpy() if TIME in frame else np.zeros(len(frame), np.int64),
        "row": np.arange(len(frame)),
    })[clicked]
    return table.sort_values(["user", "time", "row"], kind="stable")


def load_source(path: str | Path, spec: Spec, domains: Sequence[str] | None = None,
                attributes: Sequence[str] = (), prepared: bool = True) -> SourceData:
    """Read and validate ``path`` against ``spec`` and build every user's click sequence
    (``prepared``: a prepared folder means its train split, see :func:`resolve_source`)."""
    attributes = check_attributes(spec, attributes)
    path = resolve_source(path) if prepared else Path(path)
    log = load_log(path, spec)
    log, kept = select_domains(log, spec, domains, str(path))
    clicks = click_table(log, spec)
    if clicks.empty:
        lines = f"line(s) {', '.join(kept)}" if domains else "the log"
        raise MdrecError(f"no clicks (label 1) in {lines}: there are no behaviour sequences to pretrain on",
                         path=str(path), hint="check --domains, the label column and the spec's positive_if rule")
    sequences = {str(u): g.tolist() for u, g in clicks.groupby("user", sort=True)["item"]}
    times = ({str(u): g.astype(np.int64).tolist() for u, g in clicks.groupby("user", sort=True)["time"]}
             if spec.time else None)
    values = {}
    if attributes:
        frame = log.frame
        item = spec.item_id
        keys = lookup_keys(frame[item.name].to_numpy(dtype=object), item, frame[DOMAIN].to_numpy(dtype=object))
        for name in attributes:
            table = pd.DataFrame({"item": keys, "value": frame[name].to_numpy(dtype=object)})
            table = table[table["value"] != ""]
            # The item's most frequent value (ties: the first in sorted order), from every kept row.
            counts = table.groupby(["item", "value"]).size().reset_index(name="n")
            counts = counts.sort_values(["item", "n", "value"], ascending=[True, False, True], kind="stable")
            values[name] = dict(zip(counts.drop_duplicates("item")["item"], counts.drop_duplicates("item")["value"]))
    return SourceData(path=str(path), domains=kept if spec.domain.column else [SINGLE_DOMAIN],
                      sequences=sequences, times=times, attributes=values, rows=len(log), clicks=len(clicks))


def item_vocabulary(sequences: dict[str, list[str]]) -> list[str]:
    """Every item of the sequences, most frequent first (ties by id)."""
    counts = pd.Series([item for items in sequences.values() for item in items], dtype=object).value_counts()
    frame = pd.DataFrame({"item": counts.index.astype(str), "n": counts.to_numpy()})
    return frame.sort_values(["n", "item"], ascending=[False, True], kind="stable")["item"].tolist()


def attribute_tables(values: dict[str, dict[str, str]], vocabulary: list[str]) -> dict[str, dict[str, list[str]]]:
    """name -> {"vocabulary": values most frequent first among the items, "items": each item's value}."""
    out = {}
    for name, by_item in values.items():
        items = [by_item.get(item, "") for item in vocabulary]
        counts = pd.Series([v for v in items if v], dtype=object).value_counts()
        ranked = pd.DataFrame({"v": counts.index.astype(str), "n": counts.to_numpy()}).sort_values(
            ["n", "v"], ascending=[False, True], kind="stable")["v"].tolist()
        out[name] = {"vocabulary": ranked, "items": items}
    return out


def sequence_matrix(sequences: Sequence[Sequence], max_length: int, fill="") -> np.ndarray:
    """The last ``max_length`` entries of each sequence, oldest first, right-padded: [N, max_length]."""
    dtype = object if fill == "" else np.int64
    out = np.full((len(sequences), max_length), fill, dtype=dtype)
    for row, values in enumerate(sequences):
        values = list(values)[-max_length:] if max_length else []
        out[row, :len(values)] = values
    return out


def item_rows(sequences: Sequence[Sequence[str]], index: dict[str, int], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence as encoder rows int32 [N, length] (right-padded
    with 0; an item missing from ``index`` is the OOV row 1)."""
    out = np.zeros((len(sequences), length), np.int32)
    for row, items in enumerate(sequences):
        items = list(items)[-length:] if length else []
        out[row, :len(items)] = [index.get(item, 1) for item in items]
    return out


@dataclass
class Queries:
    """Held-out next items: per query the user, the history (oldest first, full length), the
    target item and counts of what was skipped (see the module doc)."""

    protocol: str
    users: list[str]
    histories: list[list[str]]
    history_times: list[list[int]] | None
    targets: list[str]
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class HeldOut:
    """What :func:`held_out_queries` returns: the training sequences (and times), the validation
    queries, the test queries (None without --test) and every user's sequence as the test sees it."""

    train: dict[str, list[str]]
    train_times: dict[str, list[int]] | None
    valid: Queries
    test: Queries | None
    before_test: dict[str, list[str]]
    before_test_times: dict[str, list[int]] | None


def queries_against(protocol: str, known: dict[str, list[str]], known_times: dict[str, list[int]] | None,
             held: dict[str, list[str]]) -> Queries:
    """Each user's first item in ``held`` against the user's ``known`` history."""
    counts = {"queries": 0, "skipped_repeat_targets": 0, "users_without_history": 0, "candidate_users": 0}
    users, histories, history_times, targets = [], [], [], []
    for user, items in held.items():
        counts["candidate_users"] += 1
        history = known.get(user)
        if not history:
            counts["users_without_history"] += 1
            continue
        if items[0] in set(history):
            counts["skipped_repeat_targets"] += 1
            continue
        users.append(user)
        histories.append(history)
        targets.append(items[0])
        if known_times is not None:
            history_times.append(known_times[user])
    counts["queries"] = len(users)
    return Queries(protocol, users, histories, history_times if known_times is not None else None, targets, counts)


def _sample(queries: Queries, max_users: int, seed: int) -> Queries:
    if len(queries) <= max_users:
        return queries
    keep = np.sort(np.random.default_rng([seed, 7]).choice(len(queries), max_users, replace=False))
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    counts = {**queries.counts, "sampled_from": len(queries), "queries": max_users}
    return Queries(queries.protocol, pick(queries.users), pick(queries.histories),
                   pick(queries.history_times) if queries.history_times is not None else None,
                   pick(queries.targets), counts)


def _joined(first: dict[str, list], second: dict[str, list] | None) -> dict[str, list]:
    if not second:
        return dict(first)
    return {user: list(first.get(user, [])) + list(second.get(user, [])) for user in {**first, **second}}


def held_out_queries(source: SourceData, valid: SourceData | None = None, test: SourceData | None = None,
                     max_valid_users: int = 10000, seed: int = 0) -> HeldOut:
    """Training sequences, validation and test queries (see the module doc). Validation queries are
    sampled down to ``max_valid_users`` (seeded); test queries never are."""
    if valid is None:
        train, train_times, held = {}, ({} if source.times is not None else None), {}
        for user, items in source.sequences.items():
            cut = len(items) - 1 if len(items) >= 2 else len(items)
            train[user] = items[:cut]
            if train_times is not None:
                train_times[user] = source.times[user][:cut]
            if cut < len(items):
                held[user] = items[cut:]
        valid_queries = queries_against("leave_last_out", train, train_times, held)
        before_test, before_test_times = dict(source.sequences), source.times
    else:
        train, train_times = source.sequences, source.times
        valid_queries = queries_against("valid_log", train, train_times, valid.sequences)
        before_test = _joined(train, valid.sequences)
        before_test_times = _joined(train_times, valid.times) if train_times is not None else None
    test_queries = None
    if test is not None:
        test_queries = queries_against("test_log", before_test, before_test_times, test.sequences)
    return HeldOut(train, train_times, _sample(valid_queries, max_valid_users, seed), test_queries,
                   before_test, before_test_times)
