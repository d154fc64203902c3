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

# The package's parts, by job: schema (the records and the roles and types), parse (the file and
# its sections), features (the features list), checks (the error reporter they share). Callers
# import from here only.
from mdrec.spec.parse import SHIPPED_SPECS, load_spec, parse_spec
from mdrec.spec.schema import (
    CATEGORICAL_TYPES,
    NUMERIC_TRANSFORMS,
    ROLES,
    TYPES,
    DomainSpec,
    FeatureSpec,
    LabelSpec,
    SequenceSpec,
    Spec,
    with_domain_values,
)

__all__ = ["CATEGORICAL_TYPES", "NUMERIC_TRANSFORMS", "ROLES", "SHIPPED_SPECS", "TYPES", "DomainSpec",
           "FeatureSpec", "LabelSpec", "SequenceSpec", "Spec", "load_spec", "parse_spec", "with_domain_values"]
