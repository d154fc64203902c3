"""Sharded logs: `mdrec data convert` writes TFRecord / Parquet shards that read back as the same
log, tf.data parses them into exactly the model inputs, and workers get disjoint file shares."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.cli import main
from mdrec.data.log import DOMAIN, LABEL, TIME, load_log
from mdrec.data.pipeline import labels_of, model_inputs
from mdrec.data.shard_convert import convert
from mdrec.data.shards import shard_files, worker_files
from mdrec.data.tfrecord import tfrecord_dataset
from mdrec.errors import MdrecError
from mdrec.spec import load_spec
from conftest import TINY_SPEC, tiny_frame

FLAT_SPEC = TINY_SPEC.replace("sequence: {item: item_id, max_length: 5}\n", "")
assert "sequence" not in FLAT_SPEC


@pytest.fixture
def flat(tmp_path):
    """A spec without a behaviour sequence and a 700-row CSV with missing values."""
    spec_path = tmp_path / "flat.yaml"
    spec_path.write_text(FLAT_SPEC)
    frame = tiny_frame(700, seed=3)
    frame.loc[[3, 50], "city"] = None
    frame.loc[[7], "price"] = np.nan
    frame.loc[[9], "tags"] = None
    frame.to_csv(tmp_path / "log.csv", index=False)
    return load_spec(spec_path), tmp_path / "log.csv", spec_path


def _canonical(log, spec):
    frame = log.frame.copy()
    for feature in spec.features:
        if feature.type == "dense_vector":
            frame[feature.name] = [tuple(np.round(v, 5)) for v in log.dense[feature.name]]
    return frame.sort_values([TIME, "user_id", "item_id", "city", "price"]).reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_convert_round_trip(tmp_path, flat, fmt):
    spec, csv, _ = flat
    manifest = convert(spec, csv, tmp_path / fmt, fmt=fmt, shards=3, chunk_rows=256, log=lambda *_: None)
    assert manifest["rows"] == 700 and [s["rows"] for s in manifest["shards"]] == [234, 233, 233]
    assert len(shard_files(tmp_path / fmt)) == 3
    original, converted = load_log(csv, spec), load_log(tmp_path / fmt, spec)
    assert converted.missing == original.missing == {"city": 2, "price": 1, "tags": 1}
    a, b = _canonical(original, spec), _canonical(converted, spec)
    for column in a.columns:
        if column == "price":  # float32 in TFRecord
            np.testing.assert_allclose(a[column], b[column], rtol=1e-6)
        else:
            assert a[column].tolist() == b[column].tolist(), column
    assert set(a.columns) == {LABEL, DOMAIN, TIME, "user_id", "item_id", "city", "tags", "title", "price", "vec"}


def test_tfrecord_dataset_parses_the_model_inputs(tmp_path, flat):
    spec, csv, _ = flat
    convert(spec, csv, tmp_path / "shards", shards=4, log=lambda *_: None)
    files = shard_files(tmp_path / "shards")
    log = load_log(tmp_path / "shards", spec)  # the files in order, as one-file-at-a-time parsing reads them
    x, y = next(iter(tfrecord_dataset(files, spec, 1000, cycle_length=1)))
    expected = model_inputs(log, spec)
    assert set(x) == set(expected)
    for name, values in expected.items():
        got = x[name].numpy()
        if values.dtype == object:
            assert [v.decode() for v in got] == values.tolist(), name
        else:
            np.testing.assert_allclose(got, values, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(y.numpy(), labels_of(log))


def test_label_rule_applies_in_the_graph(tmp_path):
    spec_text = FLAT_SPEC.replace("label: {column: click}", "label: {column: rating, positive_if: \">= 4\"}")
    (tmp_path / "s.yaml").write_text(spec_text)
    frame = tiny_frame(200).drop(columns=["click"])
    frame["rating"] = np.random.default_rng(0).integers(1, 6, len(frame))
    frame.to_parquet(tmp_path / "log.parquet")
    spec = load_spec(tmp_path / "s.yaml")
    convert(spec, tmp_path / "log.parquet", tmp_path / "shards", shards=2, log=lambda *_: None)
    labels = np.concatenate([y.numpy() for _, y in tfrecord_dataset(shard_files(tmp_path / "shards"), spec, 64,
                                                                      cycle_length=1)])
    expected = labels_of(load_log(tmp_path / "shards", spec))
    np.testing.assert_array_equal(labels, expected)
    assert expected.sum() == (frame["rating"] >= 4).sum()  # the raw rating travelled, not a 0/1 label


def test_workers_read_disjoint_file_shares(tmp_path, flat):
    spec, csv, _ = flat
    convert(spec, csv, tmp_path / "shards", shards=4, log=lambda *_: None)
    files = shard_files(tmp_path / "shards")
    shares = [worker_files(files, i, 2) for i in range(2)]
    assert sorted(shares[0] + shares[1]) == files and not set(shares[0]) & set(shares[1])
    for index in range(2):  # the worker index as a tensor, as a parameter-server worker resolves it
        dataset = tfrecord_dataset(files, spec, 1000, shard=(2, tf.constant(index, tf.int64)), shuffle_buffer=100)
        read = sorted(u.decode() + "/" + i.decode() for x, _ in dataset
                      for u, i in zip(x["user_id"].numpy(), x["item_id"].numpy()))
        own = [load_log(f, spec).frame for f in shares[index]]
        assert read == sorted(f"{u}/{i}" for frame in own for u, i in zip(frame["user_id"], frame["item_id"]))
    with pytest.raises(MdrecError, match="3 input pipelines but only 2 data file"):
        worker_files(files[:2], 0, 3)


def test_convert_reports_bad_rows_and_leaves_nothing(tmp_path, flat):
    spec, csv, _ = flat
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.loc[500, "price"] = "cheap"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MdrecError, match=r"bad\.csv, column 'price', row 501: 'cheap' is not a number"):
        convert(spec, tmp_path / "bad.csv", tmp_path / "out", chunk_rows=128, log=lambda *_: None)
    assert not (tmp_path / "out").exists()
    convert(spec, csv, tmp_path / "out", shards=2, log=lambda *_: None)
    with pytest.raises(MdrecError, match="not empty"):
        convert(spec, csv, tmp_path / "out", shards=2, log=lambda *_: None)
    with pytest.raises(MdrecError, match="unknown shard format"):
        convert(spec, csv, tmp_path / "other", fmt="avro")


def test_cli_convert_and_stream_training_from_shards(tmp_path, flat, capsys):
    spec, csv, spec_path = flat
    frame = pd.read_csv(csv)
    frame.iloc[:560].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[560:].to_csv(tmp_path / "valid.csv", index=False)
    assert main(["data", "convert", "--spec", str(spec_path), "--data", str(tmp_path / "train.csv"),
                 "--out", str(tmp_path / "shards"), "--shards", "3", "--compression", "gzip"]) == 0
    assert "wrote 560 rows in 3 tfrecord shards" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["compression"] == "gzip" and all(s["file"].endswith(".tfrecord.gz") for s in manifest["shards"])
    assert main(["spec", "check", str(spec_path), "--data", str(tmp_path / "shards")]) == 0
    assert main(["train", "--spec", str(spec_path), "--train", str(tmp_path / "shards"), "--valid",
                 str(tmp_path / "valid.csv"), "--model", "shared_bottom", "--stream", "--epochs", "1",
                 "--batch-size", "64", "--hidden", "8", "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_rows"] == 560 and metrics["tables"]["valid"][-1]["rows"] == 140


def test_each_row_is_the_example_protobuf_would_write():
    from mdrec.data.tfrecord import _encode_examples

    kinds = {"user": ("bytes", 1), "click": ("float", 1), "ts": ("int64", 1), "vec": ("vector", 3)}
    columns = {"user": np.array(["ünï", ""], dtype=object), "click": np.array([1.0, np.nan]),
               "ts": np.array([2**40 + 3, -1]), "vec": np.array([[0.5, -2.0, 3.25], [0.0, 0.0, 0.0]])}
    records = _encode_examples(tf, kinds, columns)
    train = tf.train
    for row, record in enumerate(records):
        expected = train.Example(features=train.Features(feature={
            "user": train.Feature(bytes_list=train.BytesList(value=[columns["user"][row].encode("utf-8")])),
            "click": train.Feature(float_list=train.FloatList(value=[columns["click"][row]])),
            "ts": train.Feature(int64_list=train.Int64List(value=[columns["ts"][row]])),
            "vec": train.Feature(float_list=train.FloatList(value=columns["vec"][row].tolist()))}))
        got = train.Example.FromString(record)
        if row == 1:  # NaN != NaN: compare the rest, and the NaN itself
            assert np.isnan(got.features.feature["click"].float_list.value[0])
            for message in (got, expected):
                message.features.feature["click"].float_list.value[0] = 0.0
        assert got == expected, row
