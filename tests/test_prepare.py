"""Raw dataset adapters (mdrec.data.prepare) on tiny synthetic fixtures in each raw format.

The fixtures are made up here; real data never enters the repository (licences).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdrec.data.prepare import DATASETS, prepare, sample_negatives, stratified_random_split
from mdrec.errors import MdrecError


def write(path: Path, lines: list[str], *, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + newline for line in lines).encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def read_splits(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in ("log", "train", "valid", "test")}


# ---- douban -------------------------------------------------------------------------------------

def douban_source(root: Path) -> Path:
    source = root / "douban"
    rng = np.random.default_rng(1)
    book, music = [], []
    for user in (1, 2, 3):
        for item in range(1, 13):
            book.append(f"{user}\t{item}\t{rng.integers(1, 6)}")
    for user in (1, 2, 4):
        for item in range(1, 11):
            music.append(f"{user}\t{item}\t{rng.integers(1, 6)}")
    book.append("5\t1\t4")  # a one-row user: always trains
    write(source / "douban_book_ratings.dat.gz", book)
    write(source / "douban_music_ratings.dat.gz", music)
    return source


def test_douban_log_columns_prefixes_and_split(tmp_path):
    source = douban_source(tmp_path)
    summary = prepare("douban-book-music", source, tmp_path / "out", seed=3)
    tables = read_splits(tmp_path / "out")
    log = tables["log"]
    assert list(log.columns) == ["user_id", "item_id", "domain", "rating"]
    assert pd.api.types.is_string_dtype(log["user_id"]) and pd.api.types.is_string_dtype(log["item_id"])
    assert log["rating"].dtype == np.int64
    # book:1 and music:1 are different items; user 1 is the same user in both domains.
    assert {"book:1", "music:1"} <= set(log["item_id"])
    assert (log["item_id"].str.split(":").str[0] == log["domain"]).all()
    assert set(log.loc[log["domain"] == "book", "user_id"]) & set(log.loc[log["domain"] == "music", "user_id"]) == {"1", "2"}
    assert summary["user_overlap"] == {"book&music": 2}
    assert summary["items"]["per_domain"] == {"book": 12, "music": 10}
    # The label's source column is kept as is.
    raw = pd.read_csv(source / "douban_book_ratings.dat.gz", sep="\t", header=None, names=["u", "i", "r"])
    book = log[log["domain"] == "book"]
    assert sorted(zip(book["user_id"], book["item_id"], book["rating"])) == \
        sorted((str(u), f"book:{i}", r) for u, i, r in raw.itertuples(index=False))
    # Splits partition the log; every (user, domain) keeps a training row; valid/test are non-empty.
    parts = [tables[name] for name in ("train", "valid", "test")]
    assert sum(map(len, parts)) == len(log) == summary["rows"]["log"] == 3 * 12 + 1 + 3 * 10
    assert len(pd.concat(parts).drop_duplicates()) == len(log)
    assert len(tables["valid"]) > 0 and len(tables["test"]) > 0
    train_groups = set(zip(tables["train"]["user_id"], tables["train"]["domain"]))
    assert train_groups == set(zip(log["user_id"], log["domain"]))
    assert summary["label_rate"]["per_domain"]["book"] == pytest.approx((book["rating"] >= 4).mean(), abs=1e-4)
    assert json.loads((tmp_path / "out" / "prepare.json").read_text())["rows"] == summary["rows"]
    # Same seed, same split; another seed, another split.
    prepare("douban-book-music", source, tmp_path / "again", seed=3)
    pd.testing.assert_frame_equal(tables["test"], pd.read_parquet(tmp_path / "again" / "test.parquet"))
    prepare("douban-book-music", source, tmp_path / "other", seed=4)
    assert not tables["test"].equals(pd.read_parquet(tmp_path / "other" / "test.parquet"))


def test_douban_duplicates_are_counted_not_hidden(tmp_path):
    source = douban_source(tmp_path)
    path = source / "douban_music_ratings.dat.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    write(path, lines + [lines[0], ""])  # a repeated (user, item) and a trailing blank line
    summary = prepare("douban-book-music", source, tmp_path / "out", fmt="csv")
    assert summary["dropped"]["music: duplicate (user, item) rows, first kept"] == 1
    assert summary["dropped"]["blank lines in douban_music_ratings.dat.gz"] == 1
    assert len(pd.read_csv(tmp_path / "out" / "log.csv")) == 3 * 12 + 1 + 3 * 10


# ---- movielens-1m -------------------------------------------------------------------------------

AGES = {1: "young", 18: "young", 25: "adult", 35: "senior", 45: "senior", 50: "senior", 56: "senior"}


def movielens_source(root: Path) -> Path:
    source = root / "ml"
    users = ["user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token"]
    for n, age in enumerate(AGES, start=1):
        users.append(f"1m_{n}\t{age}\t{'MF'[n % 2]}\t{n}\t0000{n}")
    items = ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token",
             "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
             "American President, The (1995)\tAmerican President, The\t1995\tComedy Drama Romance",
             "Heat (1995)\tHeat\t1995\tAction"]
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    titles = [line.split("\t")[0] for line in items[1:]]
    t = 978300000
    for n in range(1, len(AGES) + 1):
        for k, title in enumerate(titles):
            t += 7 * n + k  # distinct times, users interleaved
            inter.append(f"1m_{n}\t{title}\t{(n + k) % 5 + 1}\t{t}")
    # The real RecBole files use CRLF line endings.
    write(source / "ml-1m.user", users, newline="\r\n")
    write(source / "ml-1m.item", items, newline="\r\n")
    write(source / "ml-1m.inter.gz", inter, newline="\r\n")
    return source


def test_movielens_domains_features_and_time_split(tmp_path):
    summary = prepare("movielens-1m", movielens_source(tmp_path), tmp_path / "out")
    tables = read_splits(tmp_path / "out")
    log = tables["log"]
    assert list(log.columns) == ["user_id", "item_id", "rating", "timestamp", "domain", "gender", "age",
                                 "occupation", "title", "year", "genres"]
    assert log["timestamp"].dtype == np.int64 and log["rating"].dtype == np.int64
    assert log["year"].dtype == np.float64
    for column in ("user_id", "item_id", "domain", "gender", "age", "occupation", "title", "genres"):
        assert pd.api.types.is_string_dtype(log[column]), column
    # Each age code lands in its Scenario-Wise-Rec group.
    mapping = dict(zip(log["age"], log["domain"]))
    assert mapping == {str(code): group for code, group in AGES.items()}
    toy = log[log["item_id"] == "Toy Story (1995)"].iloc[0]
    assert (toy["title"], toy["year"], toy["genres"]) == ("Toy Story", 1995.0, "Animation|Children's|Comedy")
    assert log.loc[log["item_id"] == "Heat (1995)", "genres"].iloc[0] == "Action"
    assert set(log["rating"]) <= {1, 2, 3, 4, 5}
    # Global time cut: train strictly older than valid, valid strictly older than test.
    train, valid, test = tables["train"], tables["valid"], tables["test"]
    assert len(train) + len(valid) + len(test) == len(log) == 21
    assert len(valid) and len(test)
    assert train["timestamp"].max() < valid["timestamp"].min()
    assert valid["timestamp"].max() < test["timestamp"].min()
    assert summary["users"]["per_domain"] == {"young": 2, "adult": 1, "senior": 4}
    assert summary["user_overlap"] == {"adult&senior": 0, "adult&young": 0, "senior&young": 0}


def test_movielens_unknown_age_code_names_the_line(tmp_path):
    source = movielens_source(tmp_path)
    lines = (source / "ml-1m.user").read_text().splitlines()
    lines[3] = lines[3].replace("\t25\t", "\t26\t")
    write(source / "ml-1m.user", lines)
    with pytest.raises(MdrecError, match=r"ml-1m\.user.*line 4: age:float is '26', expected one of 1, 18, 25"):
        prepare("movielens-1m", source, tmp_path / "out")


def test_movielens_header_must_match(tmp_path):
    source = movielens_source(tmp_path)
    write(source / "ml-1m.item", ["item\ttitle\tyear\tgenre", "Heat (1995)\tHeat\t1995\tAction"])
    with pytest.raises(MdrecError, match=r"ml-1m\.item.*header lacks 'item_id:token'"):
        prepare("movielens-1m", source, tmp_path / "out")


# ---- movielens-1m-sequential --------------------------------------------------------------------

def test_movielens_sequential_is_5_core_and_leaves_the_last_two_ratings_out(tmp_path):
    source = tmp_path / "ml"
    users = ("u1", "u2", "u3", "u5", "u6")
    # Five users rate m0..m6. Dropped: m7 (2 ratings); u4 (4 ratings: round 1); m8, which has 5
    # ratings with u4's and 4 without (round 2). u1 rates m6 and m5 in the same second, m6 first
    # in the file: the file order breaks the tie (m6 validates, m5 tests).
    rows = [("u1", f"m{k}", 900 + 10 * k) for k in range(5)] + [("u1", "m6", 950), ("u1", "m5", 950)]
    rows += [(u, f"m{k}", 1000 * n + k) for n, u in enumerate(users[1:], start=1) for k in range(6)]
    rows += [(u, "m6", 5000 + n) for n, u in enumerate(users[1:])] + [("u2", "m7", 6000), ("u3", "m7", 6001)]
    rows += [("u4", f"m{k}", 7000 + k) for k in range(3)]
    rows += [(u, "m8", 8000 + n) for n, u in enumerate(("u4", "u1", "u2", "u3", "u5"))]
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{1 + n % 5}\t{t}" for n, (u, i, t) in enumerate(rows)]
    write(source / "ml-1m.inter.gz", lines)
    summary = prepare("movielens-1m-sequential", source, tmp_path / "out")
    tables = read_splits(tmp_path / "out")
    log = tables["log"]
    assert set(log["item_id"]) == {f"m{k}" for k in range(7)} and set(log["user_id"]) == set(users)
    assert len(log) == 5 * 7 and summary["users"]["all"] == 5 and summary["items"]["all"] == 7
    dropped = {k: v for k, v in summary["dropped"].items() if "fewer than 5" in k}
    assert list(dropped.values()) == [len(rows) - len(log)] and "2 round(s)" in next(iter(dropped))
    # Exactly one validation and one test rating per user: the second-last and the last by time.
    by_user = {name: dict(zip(tables[name]["user_id"], tables[name]["item_id"])) for name in ("valid", "test")}
    assert set(by_user["valid"]) == set(by_user["test"]) == set(users)
    assert len(tables["valid"]) == len(tables["test"]) == 5 and len(tables["train"]) == 5 * 5
    assert (by_user["valid"]["u1"], by_user["test"]["u1"]) == ("m6", "m5")
    assert all((by_user["valid"][u], by_user["test"][u]) == ("m5", "m6") for u in users[1:])
    last_train = tables["train"].groupby("user_id")["timestamp"].max()
    assert all(last_train[u] <= t for u, t in zip(tables["valid"]["user_id"], tables["valid"]["timestamp"]))
    assert summary["label"] == {"column": "rating", "positive_if": ">= 1"}


# ---- amazon (DisenCDR layout) -------------------------------------------------------------------

def amazon_source(root: Path) -> tuple[Path, dict[str, dict[int, set[int]]], dict[str, set[int]]]:
    """Two sides of the cloth/sport pair; returns (source, known items per domain and user, catalogues)."""
    source = root / "amazon"
    rng = np.random.default_rng(7)
    known: dict[str, dict[int, set[int]]] = {}
    catalogues: dict[str, set[int]] = {}
    for domain, other, n_items in (("cloth", "sport", 30), ("sport", "cloth", 20)):
        items = [i for i in range(n_items + 3) if i % 7 != 3]  # gaps in the id space: never sampled
        train, test, original = [], [], []
        known[domain] = {}
        for user in range(6):
            picks = rng.choice(items, size=6 + user, replace=False).tolist()
            known[domain][user] = set(picks)
            train += [f"{user}\t{i}\t1" for i in picks[:-1]]
            test.append(f"{user}\t{picks[-1]}\t1")
            original.append(f"{user}\t{picks[-1]}\t1")
        catalogues[domain] = {int(line.split("\t")[1]) for line in train}
        for user in range(6):  # test items must be in the train catalogue, as in DisenCDR's test.txt
            if int(test[user].split("\t")[1]) not in catalogues[domain]:
                test[user] = None
        test = [line for line in test if line]
        # test_original.txt adds an item unseen in train for user 0 (must not become a negative for him)
        original.append(f"0\t{n_items + 50}\t1")
        write(source / f"{domain}_{other}" / "train.txt.gz", train)
        write(source / f"{domain}_{other}" / "test.txt", test)
        write(source / f"{domain}_{other}" / "test_original.txt", original)
    return source, known, catalogues


def test_amazon_negatives_are_unseen_same_domain_and_seeded(tmp_path):
    source, known, catalogues = amazon_source(tmp_path)
    summary = prepare("amazon-cloth-sport", source, tmp_path / "out", seed=5, negatives=3)
    tables = read_splits(tmp_path / "out")
    log = tables["log"]
    assert list(log.columns) == ["user_id", "item_id", "domain", "click"]
    assert log["click"].dtype == np.int64 and set(log["click"]) == {0, 1}
    assert pd.api.types.is_string_dtype(log["user_id"]) and pd.api.types.is_string_dtype(log["item_id"])
    for name in ("train", "valid", "test"):
        part = tables[name]
        assert (part["click"] == 0).sum() == 3 * (part["click"] == 1).sum(), name
        # Each positive is followed by its own negatives: blocks of 1 + 3 rows of one user and domain.
        blocks = part.to_numpy().reshape(-1, 4, 4)
        assert (blocks[:, :, 0] == blocks[:, :1, 0]).all() and (blocks[:, :, 2] == blocks[:, :1, 2]).all()
        assert (blocks[:, 0, 3] == 1).all() and (blocks[:, 1:, 3] == 0).all()
        assert all(len(set(b[1:, 1])) == 3 for b in blocks)  # distinct negatives per positive
    negatives = log[log["click"] == 0]
    prefix = negatives["item_id"].str.split(":").str[0]
    assert (prefix == negatives["domain"]).all()
    for user, item, domain in zip(negatives["user_id"], negatives["item_id"], negatives["domain"]):
        raw_item = int(item.split(":")[1])
        assert raw_item in catalogues[domain]
        assert raw_item not in known[domain][int(user)]
    # Positives are exactly the raw rows: train.txt -> train + valid, test.txt -> test.
    positives = log[log["click"] == 1]
    assert len(positives) == sum(len(v) - 1 for d in known.values() for v in d.values()) + summary["rows"]["test"] // 4
    test_positive = tables["test"][tables["test"]["click"] == 1]
    assert len(test_positive) == sum(len(set(open(source / f, encoding="utf-8").read().split("\n")) - {""})
                                     for f in ("cloth_sport/test.txt", "sport_cloth/test.txt"))
    assert summary["user_overlap"] == {"cloth&sport": 6}
    assert summary["label_rate"]["all"] == 0.25
    assert summary["negatives"]["per_positive"] == 3
    assert "999" in summary["disencdr_protocol"]["ranking"]
    assert summary["disencdr_protocol"]["implemented_here"] is False
    # Deterministic under the seed; another seed samples other negatives (and another train/valid
    # split) but keeps the same positives.
    prepare("amazon-cloth-sport", source, tmp_path / "again", seed=5, negatives=3)
    pd.testing.assert_frame_equal(log, pd.read_parquet(tmp_path / "again" / "log.parquet"))
    prepare("amazon-cloth-sport", source, tmp_path / "other", seed=6, negatives=3)
    other = pd.read_parquet(tmp_path / "other" / "log.parquet")
    assert not other.equals(log)
    def rows(frame):
        return sorted(map(tuple, frame[frame["click"] == 1].to_numpy().tolist()))
    assert rows(other) == rows(log)


def test_sample_negatives_handles_users_who_know_almost_everything():
    rng = np.random.default_rng(0)
    size = 10
    # user 0 knows nothing, user 1 knows all but items 3 and 8, user 2 knows every item.
    known = np.array(sorted([1 * size + i for i in range(size) if i not in (3, 8)]
                            + [2 * size + i for i in range(size)]))
    out = sample_negatives(np.array([0, 0, 1, 2]), 4, size, known, rng)
    assert all(len(set(row)) == 4 for row in out[:2])
    assert set(out[2]) <= {3, 8}  # too few unknown items: repeats allowed, known items never
    assert (out[3] == -1).all()  # nothing left to sample


def test_stratified_random_split_fractions_and_train_row():
    groups = np.repeat(np.arange(400), 5)  # many small groups: a floor rule would give no valid row
    split = stratified_random_split(groups, (0.8, 0.1, 0.1), np.random.default_rng(0))
    assert abs((split == 1).mean() - 0.1) < 0.02 and abs((split == 2).mean() - 0.1) < 0.02
    assert set(groups[split == 0]) == set(groups)
    single = stratified_random_split(np.arange(50), (0.8, 0.1, 0.1), np.random.default_rng(0))
    assert (single == 0).all()


# ---- errors -------------------------------------------------------------------------------------

def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(MdrecError) as info:
        prepare("douban-books", tmp_path, tmp_path / "out")
    message = str(info.value)
    assert "douban-books" in message and "did you mean 'douban-book-music'" in message
    for name in DATASETS:
        assert name in message
    assert {"douban-book-music", "movielens-1m", "amazon-cloth-sport"} <= set(DATASETS)


def test_missing_folder_and_missing_file_name_the_path(tmp_path):
    with pytest.raises(MdrecError, match=r"nowhere.*source folder not found.*douban_book_ratings\.dat\.gz"):
        prepare("douban-book-music", tmp_path / "nowhere", tmp_path / "out")
    source = douban_source(tmp_path)
    (source / "douban_music_ratings.dat.gz").unlink()
    with pytest.raises(MdrecError) as info:
        prepare("douban-book-music", source, tmp_path / "out")
    assert str(source / "douban_music_ratings.dat.gz") in str(info.value)
    assert "douban_book_ratings.dat.gz and douban_music_ratings.dat.gz" in str(info.value)
    source, _, _ = amazon_source(tmp_path)
    (source / "sport_cloth" / "test.txt").unlink()
    with pytest.raises(MdrecError, match=r"sport_cloth/test\.txt: missing file.*train\.txt\.gz and test\.txt"):
        prepare("amazon-cloth-sport", source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on failure


@pytest.mark.parametrize("bad, problem", [
    ("2\tx\t4", r"item is 'x', expected an integer"),
    ("2\t7\t9", r"rating is '9', expected one of 1, 2, 3, 4, 5"),
    ("2\t7", r"expected 3 tab-separated fields \(user, item, rating\), found 2"),
    ("2\t7\t4\t1", r"expected 3 tab-separated fields \(user, item, rating\), found 4"),
])
def test_garbled_line_names_file_and_line(tmp_path, bad, problem):
    source = douban_source(tmp_path)
    path = source / "douban_book_ratings.dat.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines.insert(4, bad)
    write(path, lines)
    with pytest.raises(MdrecError, match=r"douban_book_ratings\.dat\.gz: line 5: " + problem):
        prepare("douban-book-music", source, tmp_path / "out")


def test_garbled_line_in_amazon_and_bad_arguments(tmp_path):
    source, _, _ = amazon_source(tmp_path)
    lines = gzip.decompress((source / "cloth_sport" / "train.txt.gz").read_bytes()).decode().splitlines()
    lines[1] = lines[1][:-1] + "0"  # DisenCDR rows are positives: the third field must be 1
    write(source / "cloth_sport" / "train.txt.gz", lines)
    with pytest.raises(MdrecError, match=r"cloth_sport/train\.txt\.gz: line 2: label is '0', expected one of 1"):
        prepare("amazon-cloth-sport", source, tmp_path / "out")
    with pytest.raises(MdrecError, match="unknown output format 'xlsx'"):
        prepare("amazon-cloth-sport", source, tmp_path / "out", fmt="xlsx")
    with pytest.raises(MdrecError, match="negatives must be a positive integer"):
        prepare("amazon-cloth-sport", source, tmp_path / "out", negatives=0)
