"""Spec validation: every mistake gives one MdrecError that names the file and says what is wrong."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mdrec.errors import MdrecError
from mdrec.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent


def _spec(**overrides):
    raw = {
        "name": "t",
        "label": {"column": "click"},
        "domain": {"column": "domain"},
        "features": [
            {"name": "user_id", "role": "user_id", "type": "categorical"},
            {"name": "item_id", "role": "item_id", "type": "categorical"},
        ],
    }
    raw.update(overrides)
    return raw


def _fails(raw, *fragments):
    with pytest.raises(MdrecError) as info:
        parse_spec(raw, source="specs/t.yaml")
    message = str(info.value)
    assert message.startswith("specs/t.yaml"), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_every_shipped_spec_is_valid():
    specs = sorted((REPO / "feature_specs").glob("*.yaml"))
    assert specs, "feature_specs/ holds no specs"
    for path in specs:
        spec = load_spec(path)
        assert spec.user_id.role == "user_id" and spec.item_id.role == "item_id"


def test_roles_and_types_parsed():
    spec = parse_spec(_spec(features=[
        {"name": "user_id", "role": "user_id", "type": "categorical", "embedding_dim": 12},
        {"name": "item_id", "role": "item_id", "type": "categorical", "scope": "domain"},
        {"name": "genres", "role": "item", "type": "categorical_list", "separator": ","},
        {"name": "emb", "role": "item", "type": "dense_vector", "dim": 4},
        {"name": "other_item", "role": "context", "type": "categorical", "share_embedding_with": "item_id"},
    ]))
    assert spec.user_id.embedding_dim == 12
    assert spec.user_id.nullable is False          # ids are never optional
    assert spec.item_id.scope == "domain"
    assert spec.feature("genres").separator == ","
    assert [f.name for f in spec.by_role("item")] == ["genres", "emb"]
    assert spec.feature("other_item").table == "item_id"
    assert spec.feature("other_item").embedding_dim == spec.item_id.embedding_dim  # inherits the width
    assert parse_spec(spec.to_dict()) == spec       # the saved copy round-trips


def test_label_rule():
    spec = parse_spec(_spec(label={"column": "rating", "positive_if": ">= 4"}))
    op, threshold = spec.label.rule()
    assert op(4, threshold) and not op(3.5, threshold)
    _fails(_spec(label={"column": "rating", "positive_if": "at least 4"}), "positive_if", ">= 4")


@pytest.mark.parametrize("raw, fragments", [
    (_spec(featurs=[]), ("unknown key 'featurs'", "did you mean 'features'")),
    ({"name": "t", "label": {"column": "c"}}, ("missing required key 'features'",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"}]),
     ("exactly one feature with role item_id", "found 0")),
    (_spec(features=[{"name": "user_id", "role": "usr_id", "type": "categorical"}]),
     ("unknown role 'usr_id'", "did you mean 'user_id'")),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "x", "role": "item", "type": "numbers"}]), ("unknown type 'numbers'",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "v", "role": "item", "type": "dense_vector"}]), ("needs 'dim'",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical", "embedding_dim": 0},
                     {"name": "item_id", "role": "item_id", "type": "categorical"}]),
     ("embedding_dim must be a positive integer",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "item_id", "role": "item", "type": "categorical"}]), ("defined 2 times",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "p", "role": "item", "type": "numeric", "separator": ","}]),
     ("do not apply to type numeric",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "leak", "role": "context", "type": "numeric", "column": "click"}]),
     ("leaks the label",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical"},
                     {"name": "x", "role": "item", "type": "categorical", "share_embedding_with": "itm"}]),
     ("unknown feature 'itm'",)),
    (_spec(features=[{"name": "user_id", "role": "user_id", "type": "categorical"},
                     {"name": "item_id", "role": "item_id", "type": "categorical", "embedding_dim": 16},
                     {"name": "x", "role": "item", "type": "categorical", "share_embedding_with": "item_id",
                      "embedding_dim": 8}]),
     ("differs from 'item_id'",)),
    (_spec(time={"column": "ts"}, sequence={"item": "user_id"}), ("must name the feature with role item_id",)),
    (_spec(domain={"column": "d", "values": ["a", "a"]}), ("lists a domain twice",)),
])
def test_invalid_specs(raw, fragments):
    _fails(raw, *fragments)


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        label: {column: click
        features: []
    """))
    with pytest.raises(MdrecError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_spec(path)
    with pytest.raises(MdrecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_a_shipped_spec_named_from_another_folder_gets_its_real_path(tmp_path, monkeypatch):
    from mdrec.spec import SHIPPED_SPECS

    monkeypatch.chdir(tmp_path)  # a README command run outside the checkout
    with pytest.raises(MdrecError) as caught:
        load_spec("feature_specs/douban-book-music.yaml")
    assert f"the shipped spec of that name is {SHIPPED_SPECS / 'douban-book-music.yaml'}" in str(caught.value)
    assert load_spec(SHIPPED_SPECS / "douban-book-music.yaml").name == "douban-book-music"


@pytest.mark.parametrize("click, said", [(1, "every row is a click (label rate 1): the input of a retrieval model"),
                                         (0, "no row is a click (label rate 0): check the spec's label")])
def test_spec_check_explains_a_one_class_log(tmp_path, tiny_spec_path, capsys, click, said):
    from conftest import tiny_frame
    from mdrec.cli import main

    frame = tiny_frame(60).assign(click=click)
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert main(["spec", "check", str(tiny_spec_path), "--data", str(tmp_path / "log.csv")]) == 0
    assert said in capsys.readouterr().out
