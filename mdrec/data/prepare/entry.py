"""The entry point: :func:`prepare` runs a dataset's adapter and writes the prepared folder;
:func:`read_prepared` reads one back. ``DATASETS`` names every adapter."""
from __future__ import annotations

import difflib
import functools
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mdrec.data.prepare.amazon import AMAZON_PAIRS, amazon_pair
from mdrec.data.prepare.douban import douban_book_music
from mdrec.data.prepare.movielens import movielens_1m, movielens_1m_sequential
from mdrec.data.prepare.prepared import SPLITS, Prepared, statistics
from mdrec.data.prepare.raw import EXPECTED, FOLDERS, family
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json, atomic_write_table
from mdrec.progress import progress
from mdrec.records import recorded_path, resolve_recorded
from mdrec.spec import SHIPPED_SPECS

FORMATS = {"parquet": None, "csv": ",", "tsv": "\t"}
RECORD = "prepare.json"

DATASETS: dict[str, Callable[..., Prepared]] = {
    "douban-book-music": douban_book_music,
    "movielens-1m": movielens_1m,
    "movielens-1m-sequential": movielens_1m_sequential,
    **{f"amazon-{a}-{b}": functools.partial(amazon_pair, pair=(a, b)) for a, b in AMAZON_PAIRS},
}


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
                         f"{EXPECTED[family(name)]}", path=str(source),
                         hint=f"pass --source ../shared/data/{FOLDERS[family(name)]}")

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
    summary.update(statistics(log, prepared.split, prepared.positive))
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
