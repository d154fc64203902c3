"""What is learned from the training split only: vocabularies, numeric statistics, domains.

The transform travels with a run (``transform.json``) so evaluation and exports apply exactly the
transform training used. IDs unseen in training map to the OOV bucket and are counted, never dropped.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from mdrec.data.grades import MAX_GRADES, GradeLevels
from mdrec.data.hashing import HashStats
from mdrec.data.log import DOMAIN, Log
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json
from mdrec.spec import FeatureSpec, Spec

# Text standardisation shared by the vocabulary fit (Python) and the model (TensorFlow regex):
# lower-case, punctuation becomes a space, split on whitespace.
PUNCTUATION = r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']"
_PUNCT_RE = re.compile(PUNCTUATION)


def text_tokens(text: str) -> list[str]:
    return _PUNCT_RE.sub(" ", text.lower()).split()


def lookup_keys(values: np.ndarray, feature: FeatureSpec, domains: np.ndarray | None) -> np.ndarray:
    """The strings a feature's table is keyed by: the value, or "domain/value" for scope: domain."""
    if feature.scope == "domain" and domains is not None:
        keyed = np.char.add(np.char.add(domains.astype(str), "/"), values.astype(str)).astype(object)
        keyed[values == ""] = ""  # missing stays missing
        return keyed
    return values


def list_tokens(values: np.ndarray, feature: FeatureSpec, domains: np.ndarray | None) -> list[str]:
    """Flat list of a categorical_list feature's elements, keyed like ``lookup_keys``."""
    keyed = feature.scope == "domain" and domains is not None
    out: list[str] = []
    for index, value in enumerate(values):
        if value:
            prefix = f"{domains[index]}/" if keyed else ""
            out.extend(prefix + token for token in value.split(feature.separator) if token)
    return out


@dataclass
class Transform:
    """Fitted preprocessing state.

    vocabularies: table name -> values, most frequent first (mask and OOV not included).
    numeric: feature -> {"mean", "std"} after the feature's transform, over non-missing rows.
    text: feature -> token vocabulary, most frequent first.
    domains: the domains seen in training, sorted.
    grades: the label's grade levels (mdrec.data.grades), or None with the reason in ``grades_off``.
    """

    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    numeric: dict[str, dict[str, float]] = field(default_factory=dict)
    text: dict[str, list[str]] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)
    rows: int = 0
    # Hashed tables (``hash_buckets`` in the spec): table -> buckets, distinct ids, collisions.
    hashed: dict[str, dict] = field(default_factory=dict)
    grades: dict | None = None
    grades_off: str | None = None

    # ---- fitting --------------------------------------------------------------------------------
    @classmethod
    def fit(cls, logs: Log | Iterable[Log], spec: Spec) -> "Transform":
        """Fit on the training log (or on its chunks, streamed)."""
        if isinstance(logs, Log):
            logs = [logs]
        counters: dict[str, Counter] = {}
        text_counters: dict[str, Counter] = {}
        sums: dict[str, list[float]] = {}
        domains: set[str] = set()
        grades: Counter = Counter()
        rows = 0
        hashed = {f.table: HashStats(f.hash_buckets) for f in spec.features if f.hash_buckets}
        for log in logs:
            rows += len(log)
            frame = log.frame
            domain_values = frame[DOMAIN].to_numpy(dtype=object)
            domains.update(pd.unique(domain_values))
            if log.grades is not None and len(grades) <= MAX_GRADES:  # past it, no levels: stop counting
                grades.update(pd.Series(log.grades).value_counts().to_dict())
            for feature in spec.features:
                if feature.is_categorical:
                    values = frame[feature.name].to_numpy(dtype=object)
                    counter = hashed.get(feature.table) or counters.setdefault(feature.table, Counter())
                    if feature.type == "categorical" and feature.table in hashed:
                        keys = lookup_keys(values, feature, domain_values)
                        counter.update(keys[keys != ""])
                    elif feature.type == "categorical":
                        keys = lookup_keys(values, feature, domain_values)
                        counter.update(pd.Series(keys[keys != ""]).value_counts().to_dict())
                    else:
                        counter.update(list_tokens(values, feature, domain_values))
                elif feature.type == "text":
                    counter = text_counters.setdefault(feature.name, Counter())
                    for text in frame[feature.name].to_numpy(dtype=object):
                        counter.update(text_tokens(text))
                elif feature.type == "numeric":
                    values = _numeric_values(frame[feature.name].to_numpy(), feature)
                    values = values[~np.isnan(values)]
                    acc = sums.setdefault(feature.name, [0.0, 0.0, 0.0])
                    acc[0] += len(values)
                    acc[1] += float(values.sum())
                    acc[2] += float(np.square(values).sum())
        if rows == 0:
            raise MdrecError("the training data has no rows")
        transform = cls(rows=rows, domains=sorted(domains))
        levels = GradeLevels.fit(grades, spec)
        if isinstance(levels, GradeLevels):
            transform.grades = levels.to_dict()
        else:
            transform.grades_off = levels
        if spec.domain.values:
            unlisted = set(domains) - set(spec.domain.values)
            if unlisted:
                raise MdrecError(f"training data has domains {sorted(unlisted)} not listed in the spec's "
                                 "domain.values", path=spec.source)
            transform.domains = list(spec.domain.values)
        for feature in spec.features:
            if feature.is_categorical and feature.table in hashed:
                transform.hashed[feature.table] = hashed[feature.table].summary()
            elif feature.is_categorical and feature.share_embedding_with is None:
                counter = counters.get(feature.table, Counter())
                transform.vocabularies[feature.table] = _ranked(counter, feature.min_count)
            elif feature.type == "text":
                transform.text[feature.name] = _ranked(text_counters[feature.name], 1)[: feature.max_tokens]
            elif feature.type == "numeric":
                n, total, squares = sums[feature.name]
                if n == 0:
                    raise MdrecError(f"numeric feature '{feature.name}' has no values in the training data",
                                     column=feature.column)
                mean = total / n
                std = float(np.sqrt(max(squares / n - mean * mean, 0.0)))
                transform.numeric[feature.name] = {"mean": mean, "std": std if std > 1e-12 else 1.0}
        return transform

    # ---- use ------------------------------------------------------------------------------------
    @property
    def grade_levels(self) -> GradeLevels | None:
        return GradeLevels.from_dict(self.grades) if self.grades is not None else None

    def vocabulary(self, feature: FeatureSpec) -> list[str]:
        return self.vocabularies[feature.table]

    def oov_counts(self, log: Log, spec: Spec, history: np.ndarray | None = None) -> dict[str, dict[str, int]]:
        """Per categorical feature: values seen, and how many map to OOV (unseen or below min_count)."""
        report: dict[str, dict[str, int]] = {}
        domain_values = log.frame[DOMAIN].to_numpy(dtype=object)
        for feature in spec.features:
            if not feature.is_categorical:
                continue
            if feature.table in self.hashed:  # every value has a bucket: nothing maps to OOV
                values = log.frame[feature.name].to_numpy(dtype=object)
                count = int((values != "").sum()) if feature.type == "categorical" else \
                    len(list_tokens(values, feature, domain_values))
                report[feature.name] = {"values": count, "oov": 0, "hashed": True}
                continue
            vocab = pd.Index(self.vocabulary(feature))
            values = log.frame[feature.name].to_numpy(dtype=object)
            if feature.type == "categorical":
                keys = lookup_keys(values, feature, domain_values)
                tokens = keys[keys != ""]
            else:
                tokens = np.asarray(list_tokens(values, feature, domain_values), dtype=object)
            oov = int((~pd.Index(tokens).isin(vocab)).sum()) if len(tokens) else 0
            report[feature.name] = {"values": int(len(tokens)), "oov": oov}
        if history is not None and spec.sequence is not None and \
                spec.feature(spec.sequence.item).table in self.hashed:
            report[spec.sequence.name] = {"values": int((history != "").sum()), "oov": 0, "hashed": True}
        elif history is not None and spec.sequence is not None:
            tokens = history[history != ""]
            vocab = pd.Index(self.vocabulary(spec.feature(spec.sequence.item)))
            report[spec.sequence.name] = {"values": int(tokens.size),
                                          "oov": int((~pd.Index(tokens).isin(vocab)).sum()) if tokens.size else 0}
        return report

    # ---- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"vocabularies": self.vocabularies, "numeric": self.numeric, "text": self.text,
               "domains": self.domains, "rows": self.rows}
        if self.hashed:
            out["hashed"] = self.hashed
        if self.grades is not None:
            out["grades"] = self.grades
        if self.grades_off is not None:
            out["grades_off"] = self.grades_off
        return out

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Transform":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MdrecError("transform file not found", path=str(path),
                             hint="is this a run folder written by `mdrec train`?") from None
        return cls(**raw)


def _numeric_values(values: np.ndarray, feature: FeatureSpec) -> np.ndarray:
    values = values.astype(np.float64)
    return np.log1p(values) if feature.transform == "log1p" else values


def _ranked(counter: Counter, min_count: int) -> list[str]:
    # Most frequent first, ties by value, so the same data always gives the same ids.
    items = [(value, count) for value, count in counter.items() if count >= min_count and value != ""]
    items.sort(key=lambda vc: (-vc[1], vc[0]))
    return [value for value, _ in items]
