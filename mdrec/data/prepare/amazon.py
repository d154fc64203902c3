"""The four Amazon domain pairs of DisenCDR (``amazon-cdr-disencdr/``): implicit positives, sampled
negatives, per-domain item ids, users aligned within the pair.

Each pair has one folder per side, e.g. ``cloth_sport/`` (the cloth domain) and ``sport_cloth/``;
each side is read, cleaned and given its negatives on its own (:func:`_side`), then the sides'
blocks are put together split by split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdrec.data.prepare.prepared import SPLITS, Prepared
from mdrec.data.prepare.raw import Col, file_note, read_tsv, source_file
from mdrec.data.prepare.transforms import sample_negatives, seeded_rng
from mdrec.data.splits import stratified_random_split

AMAZON_PAIRS = (("cloth", "sport"), ("cloth", "electronic"), ("electronic", "phone"), ("phone", "sport"))

# train.txt(.gz), test.txt and test_original.txt: user, item, 1 (every row a positive).
TRIPLE = [Col("user", "int", minimum=0), Col("item", "int", minimum=0), Col("label", "int", allowed=frozenset({1}))]


@dataclass
class _Tally:
    """What the two sides of a pair add up to, for the notes."""

    catalogue_sizes: dict[str, int] = field(default_factory=dict)  # domain -> distinct train items
    sampled: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})  # split -> negatives
    unfilled: int = 0  # negative slots left empty (a user who knows the whole catalogue)
    test_info: dict[str, dict] = field(default_factory=dict)  # domain -> test.txt / test_original.txt facts


def amazon_pair(source: Path, *, seed: int, negatives: int, pair: tuple[str, str]) -> Prepared:
    """One DisenCDR Amazon pair: implicit positives, per-domain item ids, users aligned within the pair."""
    name = f"amazon-{pair[0]}-{pair[1]}"
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    parts: dict[str, list[pd.DataFrame]] = {s: [] for s in SPLITS}  # split -> each side's rows
    tally = _Tally()
    for domain, other in (pair, pair[::-1]):
        side = _side(source / f"{domain}_{other}", name, domain, seed=seed, negatives=negatives,
                     notes=notes, tally=tally)
        for split_name, frame in side.items():
            parts[split_name].append(frame)
    frames, codes = [], []
    for code, split_name in enumerate(SPLITS):
        for frame in parts[split_name]:
            frames.append(frame)
            codes.append(np.full(len(frame), code, dtype=np.int8))
    log = pd.concat(frames, ignore_index=True).astype(
        {"user_id": "str", "item_id": "str", "domain": "str", "click": "int64"})
    split = np.concatenate(codes)
    notes.update(_notes(pair, negatives, tally))
    return Prepared(log, split, (log["click"] == 1).to_numpy(), {"column": "click"}, notes)


def _side(folder: Path, name: str, domain: str, *, seed: int, negatives: int, notes: dict,
          tally: _Tally) -> dict[str, pd.DataFrame]:
    """One side of the pair (the ``domain`` folder): per split, its positives each followed by their
    sampled negatives. Drops are counted in ``notes``; catalogue, negatives and test facts in ``tally``."""
    train, test, original = _read_side(folder, name, notes)
    train, test, catalogue = _clean_side(train, test, domain, notes)
    tally.catalogue_sizes[domain] = len(catalogue)
    tally.test_info[domain] = {"test_txt_rows_used": len(test),
                               "test_original_rows": None if original is None else len(original),
                               "test_original_items_not_in_train": None if original is None
                               else int((~original["item"].isin(catalogue)).sum())}
    known = _known_pairs([train, test] + ([original] if original is not None else []), catalogue)
    train_split = stratified_random_split(train["user"].to_numpy(), (0.9, 0.1, 0.0),
                                          seeded_rng(seed, f"{name}:{domain}:split"))
    out = {}
    for code, split_name in enumerate(SPLITS):
        positives = test if split_name == "test" else train[train_split == code]
        users = positives["user"].to_numpy(np.int64)
        items = np.searchsorted(catalogue, positives["item"].to_numpy())
        negs = sample_negatives(users, negatives, len(catalogue), known,
                                seeded_rng(seed, f"{name}:{domain}:{split_name}:negatives"))
        tally.unfilled += int((negs < 0).sum())
        tally.sampled[split_name] += int((negs >= 0).sum())
        out[split_name] = _blocks(domain, users, items, negs, catalogue)
    return out


def _read_side(folder: Path, name: str, notes: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """train.txt(.gz), test.txt and, when present, test_original.txt of one side, noted as source files."""
    train_path = source_file(folder, "train.txt.gz", name)
    test_path = source_file(folder, "test.txt", name)
    train = read_tsv(train_path, TRIPLE, header=False, notes=notes)
    test = read_tsv(test_path, TRIPLE, header=False, notes=notes)
    notes["source_files"] += [file_note(train_path, len(train)), file_note(test_path, len(test))]
    original_path = next((p for p in (folder / "test_original.txt", folder / "test_original.txt.gz")
                          if p.is_file()), None)
    original = None
    if original_path is not None:
        original = read_tsv(original_path, TRIPLE, header=False, notes=notes)
        notes["source_files"].append(file_note(original_path, len(original)))
    return train, test, original


def _clean_side(train: pd.DataFrame, test: pd.DataFrame, domain: str,
                notes: dict) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Drop duplicate rows and the test rows DisenCDR's loader cannot use (each drop counted in
    ``notes``); also the domain's catalogue, the sorted distinct items of its train rows."""
    duplicated = train.duplicated(["user", "item"]).to_numpy()
    notes["dropped"][f"{domain}: duplicate (user, item) rows in train.txt"] = int(duplicated.sum())
    train = train[~duplicated]
    # The catalogue is the domain's train items, as DisenCDR's loader defines it.
    catalogue = np.unique(train["item"].to_numpy())
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
    return train, test, catalogue


def _known_pairs(frames: list[pd.DataFrame], catalogue: np.ndarray) -> np.ndarray:
    """Every (user, item) the user is known to like, in catalogue codes: never a negative.

    Sorted unique keys ``user * len(catalogue) + code``, as :func:`sample_negatives` takes them.
    """
    everything = pd.concat([f[["user", "item"]] for f in frames], ignore_index=True)
    everything = everything[everything["item"].isin(catalogue)]
    return np.unique(everything["user"].to_numpy(np.int64) * len(catalogue)
                     + np.searchsorted(catalogue, everything["item"].to_numpy()))


def _blocks(domain: str, users: np.ndarray, items: np.ndarray, negs: np.ndarray,
            catalogue: np.ndarray) -> pd.DataFrame:
    """Rows of each positive (click = 1) followed by its sampled negatives (click = 0); unfilled
    negative slots (-1) are left out. ``items`` and ``negs`` are catalogue codes."""
    block_items = np.concatenate([items[:, None], negs], axis=1)
    block_users = np.repeat(users[:, None], block_items.shape[1], axis=1)
    click = np.zeros_like(block_items, dtype=np.int64)
    click[:, 0] = 1
    keep = (block_items >= 0).ravel()  # row-major: each positive followed by its negatives
    return pd.DataFrame({
        "user_id": block_users.ravel()[keep].astype(str),
        "item_id": np.char.add(f"{domain}:", catalogue[block_items.ravel()[keep]].astype(str)),
        "domain": domain,
        "click": click.ravel()[keep],
    })


def _notes(pair: tuple[str, str], negatives: int, tally: _Tally) -> dict[str, Any]:
    """The ``split``, ``negatives``, ``disencdr_protocol`` and ``steps`` entries of ``prepare.json``."""
    return {
        "split": {
            "method": "train.txt positives split per (user, domain) at random 90/10 into train/valid (seeded, "
                      "systematic sampling so users with few rows still contribute valid rows; each keeps a "
                      "train row); test = test.txt positives (DisenCDR's leave-one-out item per user)",
            "fractions": {"train": 0.9, "valid": 0.1},
            "group": ["user_id", "domain"],
        },
        "negatives": {
            "per_positive": negatives,
            "sampled": tally.sampled,
            "slots_left_unfilled": tally.unfilled,
            "rule": "uniform over the domain's catalogue (distinct items of that domain's train.txt), never an "
                    "item the user has in that domain's train.txt, test.txt or test_original.txt; distinct "
                    "within one positive's negatives; seeded numpy generator; each positive row is followed "
                    "by its negatives",
            "catalogue_size": tally.catalogue_sizes,
        },
        "disencdr_protocol": {
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
            "per_domain": tally.test_info,
            "implemented_here": False,
            "note": "this log is a CTR task: test holds each test.txt positive plus sampled negatives; the "
                    "1-vs-999 ranking evaluation is not implemented by `prepare`",
        },
        "steps": [
            f"read {pair[0]}_{pair[1]}/ and {pair[1]}_{pair[0]}/ train.txt.gz, test.txt (and test_original.txt "
            "for the exclusion list)",
            f"prefixed item ids with their domain ('{pair[0]}:12', '{pair[1]}:12'): item indices are per domain",
            "kept user indices as user ids: they are aligned within the pair",
            f"sampled {negatives} negatives per positive (click = 0); positives have click = 1",
        ],
    }
