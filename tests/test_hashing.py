"""Hashed ids (`hash_buckets` in the spec): the spec checks the option, the graph hashes as the
collision count assumes, collisions are counted exactly, and a hashed run trains, reloads and serves."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.data.hashing import HashedLookup, HashStats, bucket_of, expected_collisions
from mdrec.errors import MdrecError
from mdrec.spec import parse_spec
from mdrec.training.run import TrainConfig
from mdrec.workflows.train import train_run
from conftest import TINY_SPEC, reload_and_serve


def _spec(feature: str):
    return {"name": "s", "label": "click", "domain": "domain",
            "features": [{"name": "user_id", "role": "user_id", "type": "categorical"},
                         {"name": "item_id", "role": "item_id", "type": "categorical"}, feature]}


@pytest.mark.parametrize("feature, message", [
    ({"name": "x", "role": "user", "type": "categorical", "hash_buckets": 0}, "hash_buckets .* positive integer"),
    ({"name": "x", "role": "user", "type": "categorical", "hash_buckets": "many"}, "positive integer, got 'many'"),
    ({"name": "x", "role": "user", "type": "categorical", "hash_buckets": 1e7}, "positive integer, got 10000000.0"),
    ({"name": "x", "role": "user", "type": "categorical", "hash_buckets": 10, "min_count": 2},
     "hash_buckets replaces the vocabulary, so min_count"),
    ({"name": "x", "role": "user", "type": "numeric", "hash_buckets": 10}, "do not apply to type numeric"),
    ({"name": "x", "role": "user", "type": "categorical", "hash_buckets": 10, "share_embedding_with": "user_id"},
     "uses the owner's hashing"),
])
def test_spec_rejects_bad_hash_buckets(feature, message):
    with pytest.raises(MdrecError, match=message):
        parse_spec(_spec(feature))


def test_spec_round_trips_hash_buckets():
    spec = parse_spec(_spec({"name": "tags", "role": "item", "type": "categorical_list", "hash_buckets": 1000}))
    assert spec.feature("tags").hash_buckets == 1000
    assert parse_spec(__import__("yaml").safe_load(spec.dump())) == spec
    assert "hash_buckets" not in parse_spec(_spec({"name": "a", "role": "user", "type": "categorical"})).dump()


def test_collisions_counted_exactly_and_as_the_graph_hashes():
    rng = np.random.default_rng(0)
    ids = np.array([f"user-{i}" for i in rng.integers(0, 5000, 20000)], dtype=object)
    stats = HashStats(3000)
    for chunk in np.array_split(ids, 7):  # streamed in chunks, repeats across chunks
        stats.update(chunk)
    lookup = HashedLookup(3000)
    rows = lookup(tf.constant(ids.astype(str))).numpy()
    np.testing.assert_array_equal(rows, bucket_of(ids, 3000))
    assert rows.min() >= 1 and rows.max() <= 3000 and lookup.vocabulary_size() == 3001
    assert lookup(tf.constant([""])).numpy().tolist() == [0]  # missing -> the mask row
    distinct, buckets = len(set(ids)), len(set(rows.tolist()))
    summary = stats.summary()
    assert summary["distinct_ids"] == distinct and summary["distinct_buckets"] == buckets
    assert summary["collisions"] == distinct - buckets > 0
    assert abs(summary["collisions"] - expected_collisions(distinct, 3000)) < 0.05 * summary["collisions"]


def test_hashed_run_trains_reports_collisions_and_serves(tmp_path, tiny_splits):
    spec_text = TINY_SPEC.replace("{name: user_id, role: user_id, type: categorical, embedding_dim: 4}",
                                  "{name: user_id, role: user_id, type: categorical, embedding_dim: 4, hash_buckets: 16}")
    spec_text = spec_text.replace("{name: tags, role: item, type: categorical_list, separator: \"|\", embedding_dim: 2}",
                                  "{name: tags, role: item, type: categorical_list, separator: \"|\", embedding_dim: 2, "
                                  "hash_buckets: 64, scope: domain}")
    assert spec_text.count("hash_buckets") == 2
    (tmp_path / "hashed.yaml").write_text(spec_text)
    config = TrainConfig(model="shared_bottom", train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                         test=str(tiny_splits["test"]), epochs=2, batch_size=32, learning_rate=5e-3,
                         hyperparameters={"hidden": [16], "dropout": 0.0})
    metrics = train_run(tmp_path / "hashed.yaml", config, tmp_path / "run", log=lambda *_: None)
    users = metrics["hashing"]["user_id"]
    assert users["buckets"] == 16 and users["distinct_ids"] == 40  # the tiny log's 40 users in 16 buckets
    assert users["collisions"] == 40 - users["distinct_buckets"] >= 24
    tags = metrics["hashing"]["tags"]  # keyed by line: 3 domains x 7 tags seen in training
    assert tags["distinct_ids"] <= 21 and tags["collisions"] == tags["distinct_ids"] - tags["distinct_buckets"]
    assert metrics["oov"]["test"]["user_id"] == {"values": 90, "oov": 0, "hashed": True}
    transform = json.loads((tmp_path / "run" / "transform.json").read_text())
    assert "user_id" not in transform["vocabularies"] and transform["hashed"]["user_id"] == users
    assert metrics["tables"]["test"][-1]["auc"] > 0.6
    inputs, expected, _, served = reload_and_serve(tmp_path / "run", tiny_splits["test"], tmp_path)
    np.testing.assert_allclose(served["probability"].numpy(), expected, atol=1e-6)
