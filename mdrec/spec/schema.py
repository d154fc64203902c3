"""What a parsed spec holds: the feature, label, domain and sequence records, and the vocabulary
of roles and types they draw on. No validation here: ``parse.py`` builds these only from checked
input, so the records trust their fields."""
from __future__ import annotations

import operator
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable

import yaml

ROLES = ("user_id", "item_id", "user", "item", "context")
TYPES = ("categorical", "categorical_list", "numeric", "text", "dense_vector")
CATEGORICAL_TYPES = ("categorical", "categorical_list")
NUMERIC_TRANSFORMS = ("none", "log1p")

OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
             "==": operator.eq, "!=": operator.ne}
RULE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature. ``column`` is the log's column; ``name`` is the model input's name."""

    name: str
    role: str
    type: str
    column: str = ""
    embedding_dim: int = 8
    min_count: int = 1
    oov_buckets: int = 1
    nullable: bool = True
    separator: str = "|"
    max_tokens: int = 10000
    length: int = 16
    dim: int = 0
    normalize: bool = True
    transform: str = "none"
    scope: str = "shared"
    share_embedding_with: str | None = None
    hash_buckets: int = 0  # > 0: ids hashed into this many buckets instead of a vocabulary

    @property
    def is_categorical(self) -> bool:
        return self.type in CATEGORICAL_TYPES

    @property
    def table(self) -> str:
        """Name of the embedding table this feature reads (shared tables have one name)."""
        return self.share_embedding_with or self.name


@dataclass(frozen=True)
class LabelSpec:
    column: str
    positive_if: str | None = None

    def rule(self):
        """(operator, threshold) parsed from ``positive_if``, or None for a 0/1 column."""
        if self.positive_if is None:
            return None
        match = RULE.match(str(self.positive_if))
        op, value = match.group(1), float(match.group(2))
        return OPERATORS[op], value


@dataclass(frozen=True)
class DomainSpec:
    column: str | None
    values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SequenceSpec:
    """The user's behaviour sequence: items of that user's events strictly before each event."""

    item: str
    max_length: int = 20
    positives_only: bool = True

    @property
    def name(self) -> str:
        return f"{self.item}_history"


@dataclass(frozen=True)
class Spec:
    name: str
    label: LabelSpec
    domain: DomainSpec
    features: tuple[FeatureSpec, ...]
    time: str | None = None
    sequence: SequenceSpec | None = None
    description: str = ""
    source: str = field(default="", compare=False)

    # ---- lookups by role -------------------------------------------------------------------
    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def by_role(self, *roles: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.role in roles]

    def by_type(self, *types: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.type in types]

    @property
    def user_id(self) -> FeatureSpec:
        return self.by_role("user_id")[0]

    @property
    def item_id(self) -> FeatureSpec:
        return self.by_role("item_id")[0]

    @property
    def domain_column(self) -> str | None:
        return self.domain.column

    def required_columns(self) -> list[str]:
        """Columns a log must have for this spec (label included)."""
        columns = [self.label.column]
        if self.domain.column:
            columns.append(self.domain.column)
        if self.time:
            columns.append(self.time)
        columns += [f.column for f in self.features]
        return list(dict.fromkeys(columns))

    # ---- dumping: the run folder's spec.yaml, which parses back to an equal Spec -----------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["label"] = {k: v for k, v in asdict(self.label).items() if v is not None}
        domain = {"column": self.domain.column}
        if self.domain.values:
            domain["values"] = list(self.domain.values)
        out["domain"] = domain
        if self.time:
            out["time"] = {"column": self.time}
        out["features"] = [_feature_row(feature) for feature in self.features]
        if self.sequence:
            out["sequence"] = asdict(self.sequence)
        return out

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


_DEFAULTS = FeatureSpec(name="", role="user", type="categorical")


def _feature_row(feature: FeatureSpec) -> dict[str, Any]:
    """A feature as its spec line: name, role and type, then only the keys that differ from the
    defaults (a saved spec reads like a hand-written one)."""
    row = {"name": feature.name, "role": feature.role, "type": feature.type}
    for key, value in asdict(feature).items():
        if key in row or value == getattr(_DEFAULTS, key):
            continue
        if key == "column" and value == feature.name:
            continue
        row[key] = value
    return row


def with_domain_values(spec: Spec, values: Iterable[str]) -> Spec:
    """The spec with its domain list fixed (as discovered from the training split)."""
    return replace(spec, domain=replace(spec.domain, values=tuple(values)))
