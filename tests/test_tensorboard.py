"""TensorBoard event files of a run: the tags written, their values against history.json and the
metrics computed by hand, the projector's rows and metadata."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mdrec  # noqa: F401
import tensorflow as tf
from tensorboard.plugins.projector import projector_config_pb2
from google.protobuf import text_format

from conftest import events, tiny_config
from mdrec.evaluation.metrics import auc, logloss
from mdrec.training.board import Board, Validation
from mdrec.training.validation import ctr_scalars
from mdrec.training.projector import IdCounts


def test_ctr_scalars_match_the_metrics_per_line():
    labels = np.array([1, 0, 1, 0, 1, 0], np.float32)
    probabilities = np.array([0.9, 0.2, 0.4, 0.6, 0.7, 0.1])
    lines = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    out = ctr_scalars(labels, probabilities, lines)
    assert set(out) == {"auc", "auc/a", "auc/b", "logloss", "logloss/a", "logloss/b"}
    assert out["auc/a"] == pytest.approx(1.0)   # 0.9, 0.4 above 0.2
    assert out["auc/b"] == pytest.approx(1.0)   # 0.7 above 0.6, 0.1
    assert out["auc"] == pytest.approx(auc(labels, probabilities))  # 0.4 < 0.6: 8 of 9 pairs
    assert out["auc"] == pytest.approx(8 / 9)
    assert out["logloss/b"] == pytest.approx(logloss(labels[3:], probabilities[3:]))


def test_one_class_line_has_no_auc_point(tmp_path):
    out = ctr_scalars(np.array([1, 1, 0, 1], np.float32), np.array([0.8, 0.7, 0.2, 0.9]),
                      np.array(["a", "a", "b", "b"], dtype=object))
    assert np.isnan(out["auc/a"])  # only clicks in line a
    board = Board(tmp_path)
    board.epoch(0, {"train_loss": 0.5, "seconds": 1.0, "learning_rate": 1e-3}, Validation(0.5, scalars=out))
    board.close()
    written = events(tmp_path / "tensorboard" / "validation")
    assert "auc/a" not in written and written["auc/b"] == [(1, pytest.approx(1.0))]


def test_id_counts_pick_the_busiest_line_and_count_clicks_over_chunks():
    counts = IdCounts()
    counts.add(np.array(["i1", "i1", "i2"], dtype=object), np.array(["a", "b", "b"], dtype=object),
               np.array([1, 0, 1]))
    counts.add(np.array(["i1", "i1"], dtype=object), np.array(["b", "b"], dtype=object), np.array([1, 1]))
    meta = counts.metadata(["i1", "i2", "never"])
    assert meta.to_dict("list") == {"id": ["i1", "i2", "never"], "line": ["b", "b", ""],
                                    "training_clicks": [3, 1, 0]}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import TINY_SPEC, write_tiny_splits
    from mdrec.workflows.train import train_run

    folder = tmp_path_factory.mktemp("board")
    paths = write_tiny_splits(folder)
    paths["spec"] = folder / "tiny.yaml"
    paths["spec"].write_text(TINY_SPEC)
    out = folder / "run"
    train_run(paths["spec"], tiny_config(paths, epochs=2, patience=5), out, log=lambda *_: None)
    return out, paths


def test_ctr_run_writes_curves_per_line(trained_run):
    out, paths = trained_run
    train = events(out / "tensorboard" / "train")
    valid = events(out / "tensorboard" / "validation")
    history = pd.read_json(out / "history.json")
    lines = sorted(pd.read_csv(paths["valid"])["domain"].unique())
    assert len(lines) > 1
    for tag in ["loss", "learning_rate", "epoch_seconds", "auc", "logloss"] + [f"auc/{d}" for d in lines]:
        assert [s for s, _ in train[tag]] == [1, 2], tag
    assert [v for _, v in train["loss"]] == pytest.approx(history["train_loss"].tolist())
    assert [v for _, v in train["learning_rate"]] == pytest.approx([5e-3, 5e-3])
    for tag in ["auc", "logloss"] + [f"auc/{d}" for d in lines] + [f"logloss/{d}" for d in lines]:
        assert [s for s, _ in valid[tag]] == [1, 2], tag
    # The early-stopping score in history.json is the validation curve's "auc".
    assert [v for _, v in valid["auc"]] == pytest.approx(history["valid_auc"].tolist(), abs=1e-6)
    rows = pd.read_csv(paths["valid"])["domain"].value_counts()
    for d in lines:  # one histogram count per validation row of the line
        assert valid[f"score/{d}"][-1] == (2, pytest.approx(rows[d]))


def test_projector_shows_the_best_weights_with_metadata(trained_run):
    from mdrec.workflows.restore import load_trained

    out, paths = trained_run
    folder = out / "tensorboard" / "embeddings"
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig())
    names = [e.tensor_name for e in config.embeddings]
    assert names == ["item_id/.ATTRIBUTES/VARIABLE_VALUE", "user_id/.ATTRIBUTES/VARIABLE_VALUE"]
    checkpoint = tf.train.latest_checkpoint(str(folder))
    assert checkpoint is not None and Path(checkpoint).parent == folder  # relative, not the temp folder
    reader = tf.train.load_checkpoint(checkpoint)
    _, _, _, transform, _ = load_trained(out)
    best = tf.train.load_checkpoint(str(out / "best" / "weights"))
    train = pd.read_csv(paths["train"])
    for embedding, column in zip(config.embeddings, ["item_id", "user_id"]):
        vectors = reader.get_tensor(embedding.tensor_name)
        meta = pd.read_csv(folder / embedding.metadata_path, sep="\t", dtype={"id": str})
        assert list(meta.columns) == ["id", "line", "training_clicks"]
        assert len(meta) == len(vectors) == len(transform.vocabularies[column])
        first = meta.iloc[0]
        clicked = train[train[column].astype(str) == first["id"]]
        assert first["training_clicks"] == int((clicked["click"] > 0).sum())
        assert first["line"] == clicked["domain"].value_counts().index[0]
        # The rows are the best weights' vocabulary rows (after the mask and OOV rows), in order.
        table = best.get_tensor(f"model/encoder/tables/{column}/embeddings/.ATTRIBUTES/VARIABLE_VALUE")
        np.testing.assert_allclose(vectors, table[-len(transform.vocabularies[column]):])
    assert events(folder)["embeddings"][0][1].startswith("item_id: ")
