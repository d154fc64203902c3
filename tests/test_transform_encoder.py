"""Vocabularies come from training only; unseen ids map to OOV and are counted; the in-graph
preprocessing computes what the transform says."""
from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from conftest import tiny_frame
from mdrec.data.log import canonicalize
from mdrec.data.pipeline import model_inputs
from mdrec.data.transform import Transform, text_tokens
from mdrec.layers.features import FeatureEncoder
from mdrec.spec import load_spec, parse_spec


def test_vocabulary_from_training_only_and_oov_counted(tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    train = canonicalize(tiny_frame(200, seed=0), spec)
    transform = Transform.fit(train, spec)
    assert set(transform.vocabularies["user_id"]) == set(train.frame["user_id"])
    other = tiny_frame(50, seed=1)
    other.loc[:9, "user_id"] = [f"new{k}" for k in range(10)]
    other.loc[:4, "tags"] = "t0|zzz"
    evaluation = canonicalize(other, spec)
    oov = transform.oov_counts(evaluation, spec)
    expected = int((~other["user_id"].isin(train.frame["user_id"])).sum())
    assert expected >= 10
    assert oov["user_id"] == {"values": 50, "oov": expected}
    assert oov["tags"]["oov"] == 5 and oov["tags"]["values"] == 100
    assert oov["item_id"]["oov"] == int((~other["item_id"].isin(train.frame["item_id"])).sum())


def test_min_count_and_frequency_order():
    spec = parse_spec({"name": "m", "label": {"column": "y"}, "features": [
        {"name": "user_id", "role": "user_id", "type": "categorical", "min_count": 2},
        {"name": "item_id", "role": "item_id", "type": "categorical"}]})
    frame = pd.DataFrame({"user_id": ["a", "b", "b", "c", "c", "c"], "item_id": list("xyzxyz"), "y": [0, 1] * 3})
    transform = Transform.fit(canonicalize(frame, spec), spec)
    assert transform.vocabularies["user_id"] == ["c", "b"]            # 'a' seen once: OOV
    assert transform.vocabularies["item_id"] == ["x", "y", "z"]       # ties by value: deterministic


def test_domain_scoped_ids_do_not_collide():
    spec = parse_spec({"name": "d", "label": {"column": "y"}, "domain": {"column": "d"}, "features": [
        {"name": "user_id", "role": "user_id", "type": "categorical"},
        {"name": "item_id", "role": "item_id", "type": "categorical", "scope": "domain"}]})
    frame = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["12", "12"], "d": ["book", "music"], "y": [1, 0]})
    log = canonicalize(frame, spec)
    transform = Transform.fit(log, spec)
    assert sorted(transform.vocabularies["item_id"]) == ["book/12", "music/12"]
    encoder = FeatureEncoder(spec, transform)
    out = encoder({k: tf.constant(v) for k, v in model_inputs(log, spec).items()})
    assert not np.allclose(out["item_id"][0], out["item_id"][1])       # two different rows of the table
    assert np.allclose(out["user_id"][0], out["user_id"][1])           # one user table for both domains


def test_encoder_math(tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    frame = tiny_frame(120)
    frame.loc[0, "price"] = None
    log = canonicalize(frame, spec)
    transform = Transform.fit(log, spec)
    encoder = FeatureEncoder(spec, transform)
    inputs = model_inputs(log, spec)
    out = {k: v.numpy() for k, v in encoder({k: tf.constant(v) for k, v in inputs.items()}).items()}

    stats = transform.numeric["price"]
    expected = (np.nan_to_num(frame["price"].to_numpy(), nan=stats["mean"]) - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(out["price"][:, 0], expected, rtol=1e-5, atol=1e-5)
    assert abs(out["price"][1:, 0].mean()) < 0.05                     # normalised on training data

    table = encoder.tables["tags"].embeddings.numpy()
    vocab = encoder.lookups["tags"].get_vocabulary()
    row = 3
    ids = [vocab.index(t) for t in frame.loc[row, "tags"].split("|")]
    np.testing.assert_allclose(out["tags"][row], table[ids].mean(0), rtol=1e-6)

    # Python tokenisation (vocabulary fit) and graph tokenisation agree.
    title_vocab = encoder.lookups["title"].get_vocabulary()
    tokens = text_tokens(frame.loc[row, "title"])[:4]
    assert all(t in title_vocab for t in tokens)
    title_table = encoder.tables["title"].embeddings.numpy()
    np.testing.assert_allclose(out["title"][row], title_table[[title_vocab.index(t) for t in tokens]].mean(0),
                               rtol=1e-6)

    history = inputs["item_id_history"]
    item_table = encoder.tables["item_id"].embeddings.numpy()
    item_vocab = encoder.lookups["item_id"].get_vocabulary()
    row = int(np.argmax((history != "").sum(1)))
    items = [h for h in history[row] if h]
    assert items, "some event must have a history"
    np.testing.assert_allclose(out["item_id_history"][row],
                               item_table[[item_vocab.index(i) for i in items]].mean(0), rtol=1e-5)
    empty = int(np.argmin((history != "").sum(1)))
    assert (history[empty] == "").all() and np.all(out["item_id_history"][empty] == 0)


def test_unseen_values_map_to_oov_row(tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    log = canonicalize(tiny_frame(100), spec)
    transform = Transform.fit(log, spec)
    encoder = FeatureEncoder(spec, transform)
    ids = encoder.lookups["user_id"](tf.constant(["never-seen", "u1", ""])).numpy()
    assert ids[0] == 1 and ids[1] >= 2 and ids[2] == 0                  # OOV bucket, known id, mask


def test_transform_round_trip(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    transform = Transform.fit(canonicalize(tiny_frame(100), spec), spec)
    transform.save(tmp_path / "t.json")
    assert Transform.load(tmp_path / "t.json") == transform
