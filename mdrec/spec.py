"""Feature spec: the one place that knows what each column of a click log means.

A spec is a YAML file (see ``feature_specs/``)::

    name: synthetic
    label: {column: click}                       # a 0/1 column, or {column: rating, positive_if: ">= 4"}
    domain: {column: domain}                     # business line; values are discovered or listed
    time: {column: timestamp}                    # optional; needed for time splits and sequences
    features:
      - {name: user_id, role: user_id, type: categorical, embedding_dim: 16}
      - {name: item_id, role: item_id, type: categorical, embedding_dim: 16}
      - {name: tags, role: item, type: categorical_list, separator: "|"}
      - {name: title, role: item, type: text, max_tokens: 5000, length: 12}
      - {name: price, role: item, type: numeric, normalize: true, transform: log1p}
    sequence: {item: item_id, max_length: 20}    # user history, built without leakage

Roles (not names) decide where a feature goes: ``user_id`` and ``item_id`` are the two id tables,
``user`` features go to the user side, ``item`` features to the item side (and to the content
branch), ``context`` features describe the impression. Embedding tables are shared by default where
one column spans several domains (one ``user_id`` table for every business line); ``scope: domain``
keys a feature by domain when equal values in two domains are different things, and
``share_embedding_with`` makes two features use one table.
"""
from __future__ import annotations

import difflib
import operator
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from mdrec.encoding import read_utf8
from mdrec.errors import MdrecError

ROLES = ("user_id", "item_id", "user", "item", "context")
TYPES = ("categorical", "categorical_list", "numeric", "text", "dense_vector")
CATEGORICAL_TYPES = ("categorical", "categorical_list")
NUMERIC_TRANSFORMS = ("none", "log1p")

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
              "==": operator.eq, "!=": operator.ne}
_RULE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


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
        match = _RULE.match(str(self.positive_if))
        op, value = match.group(1), float(match.group(2))
        return _OPERATORS[op], value


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
        defaults = FeatureSpec(name="", role="user", type="categorical")
        out["features"] = []
        for feature in self.features:
            row = {"name": feature.name, "role": feature.role, "type": feature.type}
            for key, value in asdict(feature).items():
                if key in row or value == getattr(defaults, key):
                    continue
                if key == "column" and value == feature.name:
                    continue
                row[key] = value
            out["features"].append(row)
        if self.sequence:
            out["sequence"] = asdict(self.sequence)
        return out

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ---- parsing and validation --------------------------------------------------------------------

_TOP_KEYS = ("name", "description", "label", "domain", "time", "features", "sequence")
_FEATURE_KEYS = tuple(FeatureSpec.__dataclass_fields__)
_LABEL_KEYS = ("column", "positive_if")
_DOMAIN_KEYS = ("column", "values")
_TIME_KEYS = ("column",)
_SEQUENCE_KEYS = ("item", "time", "max_length", "positives_only")
# Keys that only make sense for some feature types: a typo-free key on the wrong type is an error too.
_TYPE_KEYS = {
    "categorical": {"embedding_dim", "min_count", "oov_buckets", "scope", "share_embedding_with",
                    "hash_buckets"},
    "categorical_list": {"embedding_dim", "min_count", "oov_buckets", "separator", "scope",
                         "share_embedding_with", "hash_buckets"},
    "numeric": {"normalize", "transform"},
    "text": {"embedding_dim", "max_tokens", "length"},
    "dense_vector": {"dim", "separator"},
}
_COMMON_KEYS = {"name", "role", "type", "column", "nullable"}


# The specs shipped in the checkout (feature_specs/ beside the package).
SHIPPED_SPECS = Path(__file__).resolve().parent.parent / "feature_specs"


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file. Every problem raises :class:`MdrecError` naming the file."""
    path = Path(path)
    if not path.is_file():
        shipped = SHIPPED_SPECS / path.name
        if shipped.is_file():  # a README command run outside the checkout: name the copy that exists
            raise MdrecError(f"spec file not found in {Path.cwd()}", path=str(path),
                             hint=f"the shipped spec of that name is {shipped}; pass that path")
        raise MdrecError("spec file not found", path=str(path),
                         hint=f"pass the path of a YAML spec such as {SHIPPED_SPECS / 'synthetic.yaml'}")
    try:
        raw = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MdrecError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=str(path)) from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: Any, source: str = "<spec>") -> Spec:
    """Validate a spec given as a mapping (as read from YAML)."""
    err = _Errors(source)
    if not isinstance(raw, Mapping):
        err.fail("the spec must be a mapping with keys name, label, domain, features")
    err.unknown_keys(raw, _TOP_KEYS, "top level")
    for key in ("name", "label", "features"):
        if key not in raw:
            err.fail(f"missing required key '{key}'")
    name = str(raw["name"])

    label_raw = _as_mapping(raw["label"], "label", err, shorthand="column")
    err.unknown_keys(label_raw, _LABEL_KEYS, "label")
    if "column" not in label_raw:
        err.fail("label needs a 'column'")
    label = LabelSpec(column=str(label_raw["column"]),
                      positive_if=None if label_raw.get("positive_if") is None else str(label_raw["positive_if"]))
    if label.positive_if is not None and not _RULE.match(label.positive_if):
        err.fail(f"label.positive_if '{label.positive_if}' is not a rule; write e.g. \">= 4\" "
                 f"(operators: {', '.join(_OPERATORS)})")

    domain_raw = _as_mapping(raw.get("domain", {"column": None}), "domain", err, shorthand="column")
    err.unknown_keys(domain_raw, _DOMAIN_KEYS, "domain")
    values = domain_raw.get("values")
    if values is not None:
        if not isinstance(values, list) or not values:
            err.fail("domain.values must be a non-empty list of domain names")
        values = tuple(str(v) for v in values)
        if len(set(values)) != len(values):
            err.fail("domain.values lists a domain twice")
    domain = DomainSpec(column=None if domain_raw.get("column") is None else str(domain_raw["column"]),
                        values=values)

    time = raw.get("time")
    if time is not None:
        time_raw = _as_mapping(time, "time", err, shorthand="column")
        err.unknown_keys(time_raw, _TIME_KEYS, "time")
        time = str(time_raw["column"])

    features_raw = raw["features"]
    if not isinstance(features_raw, list) or not features_raw:
        err.fail("'features' must be a non-empty list")
    features = tuple(_parse_feature(item, index, err) for index, item in enumerate(features_raw))
    features = _inherit_shared_widths(features, features_raw)
    _check_features(features, label, domain, time, err)

    sequence = None
    if raw.get("sequence") is not None:
        seq_raw = _as_mapping(raw["sequence"], "sequence", err)
        err.unknown_keys(seq_raw, _SEQUENCE_KEYS, "sequence")
        if "item" not in seq_raw:
            err.fail("sequence needs 'item': the name of the item_id feature whose history is built")
        item = str(seq_raw["item"])
        matching = [f for f in features if f.name == item]
        if not matching or matching[0].role != "item_id":
            err.fail(f"sequence.item '{item}' must name the feature with role item_id")
        if "time" in seq_raw and str(seq_raw["time"]) != time:
            err.fail(f"sequence.time '{seq_raw['time']}' differs from time.column '{time}'")
        max_length = _positive_int(seq_raw.get("max_length", 20), "sequence.max_length", err)
        sequence = SequenceSpec(item=item, max_length=max_length,
                                positives_only=bool(seq_raw.get("positives_only", True)))
        if sequence.name in {f.name for f in features}:
            err.fail(f"feature name '{sequence.name}' is reserved for the behaviour sequence")

    return Spec(name=name, label=label, domain=domain, features=features, time=time,
                sequence=sequence, description=str(raw.get("description", "")), source=source)


def _parse_feature(item: Any, index: int, err: "_Errors") -> FeatureSpec:
    where = f"features[{index}]"
    if not isinstance(item, Mapping):
        err.fail(f"{where} must be a mapping like {{name: user_id, role: user_id, type: categorical}}")
    err.unknown_keys(item, _FEATURE_KEYS, where)
    for key in ("name", "role", "type"):
        if key not in item:
            err.fail(f"{where} is missing '{key}'")
    name = str(item["name"])
    where = f"feature '{name}'"
    role, ftype = str(item["role"]), str(item["type"])
    if role not in ROLES:
        err.fail(f"{where}: unknown role '{role}'{_suggest(role, ROLES)}; roles are {', '.join(ROLES)}")
    if ftype not in TYPES:
        err.fail(f"{where}: unknown type '{ftype}'{_suggest(ftype, TYPES)}; types are {', '.join(TYPES)}")
    misplaced = set(item) - _COMMON_KEYS - _TYPE_KEYS[ftype]
    if misplaced:
        err.fail(f"{where}: key(s) {', '.join(sorted(misplaced))} do not apply to type {ftype}")
    kwargs: dict[str, Any] = {"name": name, "role": role, "type": ftype,
                              "column": str(item.get("column", name))}
    for key in ("embedding_dim", "max_tokens", "length"):
        if key in item:
            kwargs[key] = _positive_int(item[key], f"{where}: {key}", err)
    for key in ("min_count", "oov_buckets"):
        if key in item:
            kwargs[key] = _positive_int(item[key], f"{where}: {key}", err)
    if ftype == "dense_vector":
        if "dim" not in item:
            err.fail(f"{where}: a dense_vector needs 'dim' (the vector length)")
        kwargs["dim"] = _positive_int(item["dim"], f"{where}: dim", err)
        kwargs["separator"] = str(item.get("separator", " "))
    elif "separator" in item:
        kwargs["separator"] = str(item["separator"])
    for key in ("nullable", "normalize"):
        if key in item:
            if not isinstance(item[key], bool):
                err.fail(f"{where}: {key} must be true or false, got {item[key]!r}")
            kwargs[key] = item[key]
    if role in ("user_id", "item_id") and "nullable" not in item:
        kwargs["nullable"] = False  # an impression without its user or item is a broken log row
    if "transform" in item:
        if item["transform"] not in NUMERIC_TRANSFORMS:
            err.fail(f"{where}: transform must be one of {', '.join(NUMERIC_TRANSFORMS)}")
        kwargs["transform"] = item["transform"]
    if "scope" in item:
        if item["scope"] not in ("shared", "domain"):
            err.fail(f"{where}: scope must be 'shared' (one table across domains) or 'domain' "
                     "(equal values in two domains are different things)")
        kwargs["scope"] = item["scope"]
    if item.get("share_embedding_with") is not None:
        kwargs["share_embedding_with"] = str(item["share_embedding_with"])
    if "hash_buckets" in item:
        kwargs["hash_buckets"] = _positive_int(item["hash_buckets"], f"{where}: hash_buckets (the number of "
                                               "hash buckets, e.g. 10000000)", err)
        clash = [k for k in ("min_count", "oov_buckets", "share_embedding_with") if k in item]
        if clash:
            err.fail(f"{where}: hash_buckets replaces the vocabulary, so {', '.join(clash)} cannot be set with it"
                     + (" (a feature sharing a table uses the owner's hashing)" if "share_embedding_with" in clash
                        else ""))
    if role in ("user_id", "item_id") and ftype != "categorical":
        err.fail(f"{where}: role {role} needs type categorical")
    return FeatureSpec(**kwargs)


def _inherit_shared_widths(features: tuple[FeatureSpec, ...], raw: list) -> tuple[FeatureSpec, ...]:
    """A feature that shares a table and gives no embedding_dim takes the table owner's width."""
    by_name = {f.name: f for f in features}
    out = []
    for feature, item in zip(features, raw):
        owner = by_name.get(feature.share_embedding_with or "")
        if owner is not None and "embedding_dim" not in item:
            feature = replace(feature, embedding_dim=owner.embedding_dim)
        out.append(feature)
    return tuple(out)


def _check_features(features: tuple[FeatureSpec, ...], label: LabelSpec, domain: DomainSpec,
                    time: str | None, err: "_Errors") -> None:
    names = [f.name for f in features]
    for name in set(names):
        if names.count(name) > 1:
            err.fail(f"feature '{name}' is defined {names.count(name)} times")
    for role in ("user_id", "item_id"):
        count = sum(f.role == role for f in features)
        if count != 1:
            err.fail(f"the spec needs exactly one feature with role {role}, found {count}")
    if domain.column and domain.column in names:
        err.fail(f"feature name '{domain.column}' is the domain column's name; model inputs are keyed by "
                 "name, so rename the feature (its `column` can still read the same column)")
    reserved = {label.column, domain.column, time} - {None}
    for feature in features:
        if feature.column in reserved and feature.column == label.column:
            err.fail(f"feature '{feature.name}' reads the label column '{label.column}': that leaks the label")
    by_name = {f.name: f for f in features}
    for feature in features:
        target = feature.share_embedding_with
        if target is None:
            continue
        if target not in by_name:
            err.fail(f"feature '{feature.name}': share_embedding_with names unknown feature '{target}'"
                     f"{_suggest(target, list(by_name))}")
        other = by_name[target]
        if not (feature.is_categorical and other.is_categorical):
            err.fail(f"feature '{feature.name}': only categorical features can share an embedding table")
        if other.share_embedding_with is not None:
            err.fail(f"feature '{feature.name}': '{target}' itself shares a table; point at the owner")
        if other.embedding_dim != feature.embedding_dim:
            err.fail(f"feature '{feature.name}': embedding_dim {feature.embedding_dim} differs from "
                     f"'{target}' ({other.embedding_dim}); a shared table has one width")


def _as_mapping(value: Any, where: str, err: "_Errors", shorthand: str | None = None) -> Mapping:
    if isinstance(value, Mapping):
        return value
    if shorthand is not None and isinstance(value, str):
        return {shorthand: value}
    err.fail(f"'{where}' must be a mapping such as {{column: ...}}")
    raise AssertionError  # unreachable


def _positive_int(value: Any, where: str, err: "_Errors") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        err.fail(f"{where} must be a positive integer, got {value!r}")
    return int(value)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Errors:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> None:
        raise MdrecError(message, path=self.source)

    def unknown_keys(self, mapping: Mapping, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in mapping:
            if key not in allowed:
                self.fail(f"unknown key '{key}' in {where}{_suggest(str(key), allowed)}; "
                          f"allowed: {', '.join(allowed)}")


def with_domain_values(spec: Spec, values: Iterable[str]) -> Spec:
    """The spec with its domain list fixed (as discovered from the training split)."""
    return replace(spec, domain=replace(spec.domain, values=tuple(values)))
