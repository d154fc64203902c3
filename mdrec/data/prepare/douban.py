"""douban-book-music: the GA-DTCDR release of Douban book and music ratings (``douban-book-music/``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdrec.data.prepare.prepared import Prepared
from mdrec.data.prepare.raw import Col, file_note, read_tsv, source_file
from mdrec.data.prepare.transforms import seeded_rng
from mdrec.data.splits import stratified_random_split


def douban_book_music(source: Path, *, seed: int, negatives: int) -> Prepared:
    """Douban book + music ratings (GA-DTCDR release): explicit 1-5 ratings, user ids shared."""
    notes: dict[str, Any] = {"source_files": [], "dropped": {}}
    frames = []
    for domain in ("book", "music"):
        path = source_file(source, f"douban_{domain}_ratings.dat.gz", "douban-book-music")
        raw = read_tsv(path, [Col("user", "int", minimum=0), Col("item", "int", minimum=0),
                              Col("rating", "int", allowed=frozenset({1, 2, 3, 4, 5}))], header=False, notes=notes)
        notes["source_files"].append(file_note(path, len(raw)))
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
                                    seeded_rng(seed, "douban-split"))
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
