"""Reading a spec: the YAML file, then each top-level section in turn. Every problem raises one
:class:`MdrecError` naming the file, the section or feature, and what to write instead."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from mdrec.encoding import read_utf8
from mdrec.errors import MdrecError
from mdrec.spec.checks import Errors, as_mapping, positive_int
from mdrec.spec.features import parse_features
from mdrec.spec.schema import OPERATORS, RULE, DomainSpec, FeatureSpec, LabelSpec, SequenceSpec, Spec

_TOP_KEYS = ("name", "description", "label", "domain", "time", "features", "sequence")
_LABEL_KEYS = ("column", "positive_if")
_DOMAIN_KEYS = ("column", "values")
_TIME_KEYS = ("column",)
_SEQUENCE_KEYS = ("item", "time", "max_length", "positives_only")

# The specs shipped in the checkout (feature_specs/ beside the package).
SHIPPED_SPECS = Path(__file__).resolve().parents[2] / "feature_specs"


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
    err = Errors(source)
    _check_top_level(raw, err)
    # Each section leans on those before it: the features must not read the label, domain or time
    # columns, and the sequence names a feature.
    label = _parse_label(raw["label"], err)
    domain = _parse_domain(raw.get("domain", {"column": None}), err)
    time = _parse_time(raw.get("time"), err)
    features = parse_features(raw["features"], label, domain, time, err)
    sequence = _parse_sequence(raw.get("sequence"), features, time, err)
    return Spec(name=str(raw["name"]), label=label, domain=domain, features=features, time=time,
                sequence=sequence, description=str(raw.get("description", "")), source=source)


def _check_top_level(raw: Any, err: Errors) -> None:
    if not isinstance(raw, Mapping):
        err.fail("the spec must be a mapping with keys name, label, domain, features")
    err.unknown_keys(raw, _TOP_KEYS, "top level")
    for key in ("name", "label", "features"):
        if key not in raw:
            err.fail(f"missing required key '{key}'")


def _parse_label(value: Any, err: Errors) -> LabelSpec:
    raw = as_mapping(value, "label", err, shorthand="column")
    err.unknown_keys(raw, _LABEL_KEYS, "label")
    if "column" not in raw:
        err.fail("label needs a 'column'")
    label = LabelSpec(column=str(raw["column"]),
                      positive_if=None if raw.get("positive_if") is None else str(raw["positive_if"]))
    if label.positive_if is not None and not RULE.match(label.positive_if):
        err.fail(f"label.positive_if '{label.positive_if}' is not a rule; write e.g. \">= 4\" "
                 f"(operators: {', '.join(OPERATORS)})")
    return label


def _parse_domain(value: Any, err: Errors) -> DomainSpec:
    raw = as_mapping(value, "domain", err, shorthand="column")
    err.unknown_keys(raw, _DOMAIN_KEYS, "domain")
    values = raw.get("values")
    if values is not None:
        if not isinstance(values, list) or not values:
            err.fail("domain.values must be a non-empty list of domain names")
        values = tuple(str(v) for v in values)
        if len(set(values)) != len(values):
            err.fail("domain.values lists a domain twice")
    return DomainSpec(column=None if raw.get("column") is None else str(raw["column"]), values=values)


def _parse_time(value: Any, err: Errors) -> str | None:
    if value is None:
        return None
    raw = as_mapping(value, "time", err, shorthand="column")
    err.unknown_keys(raw, _TIME_KEYS, "time")
    return str(raw["column"])


def _parse_sequence(value: Any, features: tuple[FeatureSpec, ...], time: str | None,
                    err: Errors) -> SequenceSpec | None:
    if value is None:
        return None
    raw = as_mapping(value, "sequence", err)
    err.unknown_keys(raw, _SEQUENCE_KEYS, "sequence")
    if "item" not in raw:
        err.fail("sequence needs 'item': the name of the item_id feature whose history is built")
    item = str(raw["item"])
    matching = [f for f in features if f.name == item]
    if not matching or matching[0].role != "item_id":
        err.fail(f"sequence.item '{item}' must name the feature with role item_id")
    # The history is ordered by the log's one time column; a second name would be a second clock.
    if "time" in raw and str(raw["time"]) != time:
        err.fail(f"sequence.time '{raw['time']}' differs from time.column '{time}'")
    max_length = positive_int(raw.get("max_length", 20), "sequence.max_length", err)
    sequence = SequenceSpec(item=item, max_length=max_length, positives_only=bool(raw.get("positives_only", True)))
    if sequence.name in {f.name for f in features}:
        err.fail(f"feature name '{sequence.name}' is reserved for the behaviour sequence")
    return sequence
