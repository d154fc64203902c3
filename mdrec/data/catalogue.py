"""The candidate catalogue of a retrieval run: one row per item, and which business lines carry it.

A two-tower model scores a query against every item of the query's line. The catalogue holds what
the candidate tower needs for each item (its item-role feature values, as last seen in training),
which lines' catalogues it belongs to, and its training positives per line (popularity, and the
sampling frequency behind the logQ correction).

Items are keyed as their embedding table keys them: the raw id, or "line/id" for ``scope: domain``
ids, where equal ids in two lines are different items.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.data.transform import lookup_keys
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_table
from mdrec.spec import Spec

KEY = "__item_key__"


def item_features(spec: Spec) -> list:
    """The candidate tower's features: the item id and every item-role feature."""
    return [spec.item_id] + [f for f in spec.by_role("item")]


def item_keys(log: Log, spec: Spec) -> np.ndarray:
    """Table keys of each row's item, object [N]."""
    return lookup_keys(log.frame[spec.item_id.name].to_numpy(dtype=object), spec.item_id,
                       log.frame[DOMAIN].to_numpy(dtype=object))


@dataclass
class Catalogue:
    """frame: one row per item key (KEY, DOMAIN, the item feature columns); dense: dense_vector item
    features [N, dim]; membership: bool [D, N]; positives: int64 [D, N] training clicks per line."""

    frame: pd.DataFrame
    dense: dict[str, np.ndarray]
    domains: list[str]
    membership: np.ndarray
    positives: np.ndarray
    id_column: str

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def keys(self) -> np.ndarray:
        return self.frame[KEY].to_numpy(dtype=object)

    @property
    def ids(self) -> np.ndarray:
        """The raw item ids (what a client sends and receives), object [N]."""
        return self.frame[self.id_column].to_numpy(dtype=object)

    @classmethod
    def from_log(cls, log: Log, spec: Spec, domains: list[str]) -> "Catalogue":
        """Every item of the (training) log; an item is in a line's catalogue once it appeared there."""
        keys = item_keys(log, spec)
        present = keys != ""
        if not present.any():
            raise MdrecError("the training data has no item ids to build a catalogue from",
                             column=spec.item_id.column)
        columns = [f.name for f in item_features(spec) if f.type != "dense_vector"]
        frame = log.frame.loc[present, columns + [DOMAIN]].copy()
        frame[KEY] = keys[present]
        rows = np.flatnonzero(present)
        # The item's features as last seen (logs are read in order; later rows are newer).
        last = ~frame.duplicated(KEY, keep="last").to_numpy()
        frame, chosen = frame[last].reset_index(drop=True), rows[last]
        order = np.argsort(frame[KEY].to_numpy(dtype=str), kind="stable")
        frame, chosen = frame.iloc[order].reset_index(drop=True), chosen[order]
        dense = {f.name: log.dense[f.name][chosen] for f in item_features(spec) if f.type == "dense_vector"}

        index = pd.Index(frame[KEY])
        item_of_row = index.get_indexer(keys[present])
        domain_of_row = pd.Index(domains).get_indexer(log.frame[DOMAIN].to_numpy(dtype=object)[present])
        membership = np.zeros((len(domains), len(frame)), dtype=bool)
        membership[domain_of_row, item_of_row] = True
        positives = np.zeros((len(domains), len(frame)), dtype=np.int64)
        clicked = log.frame[LABEL].to_numpy()[present] > 0
        np.add.at(positives, (domain_of_row[clicked], item_of_row[clicked]), 1)
        return cls(frame, dense, list(domains), membership, positives, spec.item_id.name)

    def index_of(self, keys: np.ndarray) -> np.ndarray:
        """Catalogue row of each key, -1 where the key is not in the catalogue."""
        return pd.Index(self.frame[KEY]).get_indexer(np.asarray(keys, dtype=object))

    def inputs(self, spec: Spec) -> dict[str, np.ndarray]:
        """The candidate tower's raw inputs for every item (and its line, for scoped keys)."""
        from mdrec.data.pipeline import model_inputs

        return model_inputs(Log(self.frame, self.dense), spec, features=item_features(spec))

    def sampling_probability(self) -> np.ndarray:
        """How often each item is a training positive, float64 [N] (summed over lines, floored at
        one click so that no candidate has probability zero)."""
        counts = np.maximum(self.positives.sum(0), 1).astype(np.float64)
        return counts / counts.sum()

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        frame = self.frame.copy()
        for name, values in self.dense.items():
            frame[name] = list(values)
        for d, domain in enumerate(self.domains):
            frame[f"__in__{domain}"] = self.membership[d]
            frame[f"__positives__{domain}"] = self.positives[d]
        return atomic_write_table(frame, path, "parquet")

    @classmethod
    def load(cls, path: str | Path, spec: Spec, domains: list[str]) -> "Catalogue":
        path = Path(path)
        if not path.is_file():
            raise MdrecError("the run has no catalogue.parquet (was it trained as a retrieval model?)",
                             path=str(path.parent))
        frame = pd.read_parquet(path)
        membership = np.stack([frame.pop(f"__in__{d}").to_numpy(bool) for d in domains])
        positives = np.stack([frame.pop(f"__positives__{d}").to_numpy(np.int64) for d in domains])
        dense = {f.name: np.stack(frame.pop(f.name).to_numpy()).astype(np.float32)
                 for f in item_features(spec) if f.type == "dense_vector"}
        for column in frame.columns:
            if frame[column].dtype != np.float64 and column != DOMAIN:
                frame[column] = frame[column].astype(object)
        frame[DOMAIN] = frame[DOMAIN].astype(object)
        return cls(frame, dense, list(domains), membership, positives, spec.item_id.name)
