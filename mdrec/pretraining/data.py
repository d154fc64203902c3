"""Behaviour sequences for pretraining, read from a click log.

Per user: the clicked items (label 1) of the kept business lines, ordered by the spec's time
column (file order without one; ties keep file order), oldest first. Items are the item table's
keys (``domain/item`` for ``scope: domain`` ids). The item vocabulary is every item of these
sequences, most frequent first (ties by id), so row 2 + k of the encoder's table is the k-th most
clicked item (the order a log-uniform negative sampler assumes).

Validation (held-out next item):
  leave_last_out  (no --valid) each user with two or more clicks holds out the last one; the
                  encoder trains on the rest, and the query is the user's remaining sequence.
  valid_log       (--valid LOG) each user's first click in LOG (same lines) is the target and
                  the user's whole training sequence the query.
In both, the user's training items are removed from the ranking; a target the user already
clicked is skipped (counted), and a target outside the vocabulary stays a miss (counted).
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


@dataclass
class Validation:
    """Held-out next items: per query the user, the history (oldest first, full length), the
    target item and the items removed from the ranking (the user's training items)."""

    protocol: str
    users: list[str]
    histories: list[list[str]]
    history_times: list[list[int]] | None
    targets: list[str]
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.users)


def split_validation(source: SourceData, valid: SourceData | None = None, max_users: int = 10000, seed: int = 0
                     ) -> tuple[dict[str, list[str]], dict[str, list[int]] | None, Validation]:
    """(training sequences, their times, validation queries); see the module doc."""
    counts = {"queries": 0, "skipped_repeat_targets": 0, "users_without_history": 0, "candidate_users": 0}
    users, histories, history_times, targets = [], [], [], []
    if valid is None:
        protocol = "leave_last_out"
        train = {}
        train_times = {} if source.times is not None else None
        for user, items in source.sequences.items():
            held = len(items) >= 2
            train[user] = items[:-1] if held else list(items)
            if train_times is not None:
                train_times[user] = source.times[user][:-1] if held else list(source.times[user])
            if held:
                counts["candidate_users"] += 1
                if items[-1] in set(items[:-1]):
                    counts["skipped_repeat_targets"] += 1
                    continue
                users.append(user)
                histories.append(train[user])
                targets.append(items[-1])
                if train_times is not None:
                    history_times.append(train_times[user])
    else:
        protocol = "valid_log"
        train, train_times = source.sequences, source.times
        for user, items in valid.sequences.items():
            counts["candidate_users"] += 1
            history = train.get(user)
            if not history:
                counts["users_without_history"] += 1
                continue
            if items[0] in set(history):
                counts["skipped_repeat_targets"] += 1
                continue
            users.append(user)
            histories.append(history)
            targets.append(items[0])
            if train_times is not None:
                history_times.append(train_times[user])
    if len(users) > max_users:
        keep = np.sort(np.random.default_rng([seed, 7]).choice(len(users), max_users, replace=False))
        counts["sampled_from"] = len(users)
        users = [users[i] for i in keep]
        histories = [histories[i] for i in keep]
        targets = [targets[i] for i in keep]
        history_times = [history_times[i] for i in keep] if train_times is not None else []
    counts["queries"] = len(users)
    return train, train_times, Validation(protocol, users, histories, history_times if train_times is not None else None,
                                          targets, counts)
