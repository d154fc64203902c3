"""The spec's ``features`` list: each entry checked and read into a :class:`FeatureSpec`, then the
rules that span entries (unique names, one id per side, shared tables)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from mdrec.spec.checks import Errors, positive_int, suggest
from mdrec.spec.schema import NUMERIC_TRANSFORMS, ROLES, TYPES, DomainSpec, FeatureSpec, LabelSpec

_FEATURE_KEYS = tuple(FeatureSpec.__dataclass_fields__)
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
_ID_ROLES = ("user_id", "item_id")


def parse_features(raw: Any, label: LabelSpec, domain: DomainSpec, time: str | None,
                   err: Errors) -> tuple[FeatureSpec, ...]:
    """The ``features`` section. The label, domain and time columns are needed to catch a feature
    that reads one of them."""
    if not isinstance(raw, list) or not raw:
        err.fail("'features' must be a non-empty list")
    features = tuple(_parse_feature(item, index, err) for index, item in enumerate(raw))
    features = _inherit_shared_widths(features, raw)
    _check_features(features, label, domain, time, err)
    return features


def _parse_feature(item: Any, index: int, err: Errors) -> FeatureSpec:
    name, role, ftype = _identity(item, index, err)
    where = f"feature '{name}'"
    kwargs: dict[str, Any] = {"name": name, "role": role, "type": ftype,
                              "column": str(item.get("column", name))}
    # One step per group of keys, in this order, so the first problem reported stays the same.
    kwargs.update(_sizes(item, where, err))
    kwargs.update(_vector_and_separator(item, ftype, where, err))
    kwargs.update(_flags(item, role, where, err))
    kwargs.update(_choices(item, where, err))
    kwargs.update(_hashing(item, where, err))
    if role in _ID_ROLES and ftype != "categorical":
        err.fail(f"{where}: role {role} needs type categorical")
    return FeatureSpec(**kwargs)


def _identity(item: Any, index: int, err: Errors) -> tuple[str, str, str]:
    """Name, role and type, checked first: which other keys are allowed depends on the type."""
    where = f"features[{index}]"  # until the entry is known to have a name
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
        err.fail(f"{where}: unknown role '{role}'{suggest(role, ROLES)}; roles are {', '.join(ROLES)}")
    if ftype not in TYPES:
        err.fail(f"{where}: unknown type '{ftype}'{suggest(ftype, TYPES)}; types are {', '.join(TYPES)}")
    misplaced = set(item) - _COMMON_KEYS - _TYPE_KEYS[ftype]
    if misplaced:
        err.fail(f"{where}: key(s) {', '.join(sorted(misplaced))} do not apply to type {ftype}")
    return name, role, ftype


def _sizes(item: Mapping, where: str, err: Errors) -> dict[str, int]:
    return {key: positive_int(item[key], f"{where}: {key}", err)
            for key in ("embedding_dim", "max_tokens", "length", "min_count", "oov_buckets") if key in item}


def _vector_and_separator(item: Mapping, ftype: str, where: str, err: Errors) -> dict[str, Any]:
    if ftype == "dense_vector":
        if "dim" not in item:
            err.fail(f"{where}: a dense_vector needs 'dim' (the vector length)")
        # A vector is written "0.1 0.2 ...": its own default separator, not the list's "|".
        return {"dim": positive_int(item["dim"], f"{where}: dim", err),
                "separator": str(item.get("separator", " "))}
    return {"separator": str(item["separator"])} if "separator" in item else {}


def _flags(item: Mapping, role: str, where: str, err: Errors) -> dict[str, bool]:
    flags = {}
    for key in ("nullable", "normalize"):
        if key in item:
            # YAML reads `nullable: no` as False but `nullable: 0` as an int: only true/false are flags.
            if not isinstance(item[key], bool):
                err.fail(f"{where}: {key} must be true or false, got {item[key]!r}")
            flags[key] = item[key]
    if role in _ID_ROLES and "nullable" not in item:
        flags["nullable"] = False  # an impression without its user or item is a broken log row
    return flags


def _choices(item: Mapping, where: str, err: Errors) -> dict[str, Any]:
    """The keys that pick one of a few behaviours: transform, scope, the shared table."""
    out: dict[str, Any] = {}
    if "transform" in item:
        if item["transform"] not in NUMERIC_TRANSFORMS:
            err.fail(f"{where}: transform must be one of {', '.join(NUMERIC_TRANSFORMS)}")
        out["transform"] = item["transform"]
    if "scope" in item:
        if item["scope"] not in ("shared", "domain"):
            err.fail(f"{where}: scope must be 'shared' (one table across domains) or 'domain' "
                     "(equal values in two domains are different things)")
        out["scope"] = item["scope"]
    if item.get("share_embedding_with") is not None:
        out["share_embedding_with"] = str(item["share_embedding_with"])
    return out


def _hashing(item: Mapping, where: str, err: Errors) -> dict[str, int]:
    if "hash_buckets" not in item:
        return {}
    buckets = positive_int(item["hash_buckets"], f"{where}: hash_buckets (the number of "
                           "hash buckets, e.g. 10000000)", err)
    # Hashing has no vocabulary, so the vocabulary's settings would be silently ignored.
    clash = [k for k in ("min_count", "oov_buckets", "share_embedding_with") if k in item]
    if clash:
        err.fail(f"{where}: hash_buckets replaces the vocabulary, so {', '.join(clash)} cannot be set with it"
                 + (" (a feature sharing a table uses the owner's hashing)" if "share_embedding_with" in clash
                    else ""))
    return {"hash_buckets": buckets}


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
                    time: str | None, err: Errors) -> None:
    names = [f.name for f in features]
    for name in set(names):
        if names.count(name) > 1:
            err.fail(f"feature '{name}' is defined {names.count(name)} times")
    for role in _ID_ROLES:
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
    _check_shared_tables(features, err)


def _check_shared_tables(features: tuple[FeatureSpec, ...], err: Errors) -> None:
    """``share_embedding_with`` points at a categorical owner of the same width (one table, one width)."""
    by_name = {f.name: f for f in features}
    for feature in features:
        target = feature.share_embedding_with
        if target is None:
            continue
        if target not in by_name:
            err.fail(f"feature '{feature.name}': share_embedding_with names unknown feature '{target}'"
                     f"{suggest(target, list(by_name))}")
        other = by_name[target]
        if not (feature.is_categorical and other.is_categorical):
            err.fail(f"feature '{feature.name}': only categorical features can share an embedding table")
        if other.share_embedding_with is not None:
            err.fail(f"feature '{feature.name}': '{target}' itself shares a table; point at the owner")
        if other.embedding_dim != feature.embedding_dim:
            err.fail(f"feature '{feature.name}': embedding_dim {feature.embedding_dim} differs from "
                     f"'{target}' ({other.embedding_dim}); a shared table has one width")
