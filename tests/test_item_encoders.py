"""Item encoders (id / content / hybrid): content mode never reads the item ID (not in the
candidate tower, not in the history), cold items get distinct embeddings from their content, the
text encoders behave as their names say, and content exports serve raw text."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import load_log
from mdrec.data.pipeline import model_inputs
from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.layers.item_encoders import lsa_token_table, precompute_text_vectors
from mdrec.models.ctr import Star
from mdrec.models.registry import build_model
from mdrec.models.two_tower import TwoTower, candidate_signature
from mdrec.spec import load_spec, parse_spec, with_domain_values
from mdrec.training.run import TrainConfig
from mdrec.workflows.restore import restore_for
from mdrec.workflows.train import train_run
from conftest import TINY_SPEC, write_tiny_splits


def _data(spec_path, splits):
    spec = load_spec(spec_path)
    log = load_log(splits["train"], spec)
    transform = Transform.fit(log, spec)
    spec = with_domain_values(spec, transform.domains)
    return spec, log, transform, Catalogue.from_log(log, spec, transform.domains)


def _tensors(inputs, rows=None):
    return {k: tf.constant(v if rows is None else v[rows]) for k, v in inputs.items()}


def _two_tower(spec, transform, catalogue, inputs, **hyperparameters):
    model = TwoTower(spec, transform, catalogue, embedding_dim=8, hidden=(8,), **hyperparameters)
    model.build_variables({k: v[:2] for k, v in inputs.items()})
    return model


def _new_items(catalogue, spec):
    """Two items absent from training, with different content (and ids nobody has seen)."""
    inputs = catalogue.inputs(spec)
    rows = {k: v[:2].copy() for k, v in inputs.items()}
    rows["item_id"] = np.array(["brand-new-1", "brand-new-2"], dtype=object)
    rows["title"] = np.array(["Red-1 Thing, nr 2", "Blue gadget deluxe"], dtype=object)
    rows["tags"] = np.array(["t1|t4", "t3|t6"], dtype=object)
    rows["price"] = np.array([0.5, 7.0], np.float32)
    rows["vec"] = np.array([[1.0, 0.0, -1.0], [-0.5, 2.0, 0.3]], np.float32)
    return rows


@pytest.fixture(scope="module")
def content_run(tmp_path_factory):
    """A content-mode two-tower trained for one epoch on the tiny splits."""
    folder = tmp_path_factory.mktemp("content")
    spec_path = folder / "tiny.yaml"
    spec_path.write_text(TINY_SPEC)
    splits = write_tiny_splits(folder)
    config = TrainConfig(model="two_tower", train=str(splits["train"]), valid=str(splits["valid"]),
                         test=str(splits["test"]), epochs=1, batch_size=64,
                         hyperparameters={"item_encoder": "content", "hidden": [8], "embedding_dim": 8})
    train_run(spec_path, config, folder / "run", log=lambda m: None)
    return folder, spec_path, splits


def test_content_mode_never_reads_the_item_id(tiny_spec_path, tiny_splits):
    spec, log, transform, catalogue = _data(tiny_spec_path, tiny_splits)
    inputs = model_inputs(log, spec)
    batch = _tensors(inputs, np.arange(16))
    renamed = dict(batch)
    renamed["item_id"] = tf.constant([f"never-seen-{i}" for i in range(16)])
    shuffled = dict(batch)
    shuffled["item_id"] = tf.constant(inputs["item_id"][np.arange(16)[::-1] + 20])
    for mode in ("content", "id", "hybrid"):
        model = _two_tower(spec, transform, catalogue, inputs, item_encoder=mode)
        base = model.candidate_embedding(batch).numpy()
        for other in (renamed, shuffled):
            same = np.allclose(base, model.candidate_embedding(other).numpy(), atol=1e-6)
            assert same == (mode == "content"), mode  # the id and hybrid towers do read it
        assert (spec.item_id.name in [f.name for f in model.item_encoder.reads]) == (mode != "content")

    star = Star(spec, transform, hidden=(8,), item_encoder="content", catalogue=catalogue)
    star_id = Star(spec, transform, hidden=(8,), item_encoder="id")
    for model, reads_id in ((star, False), (star_id, True)):
        base = model(batch).numpy()
        assert np.allclose(base, model(renamed).numpy(), atol=1e-6) != reads_id
    # The id branch reads no content: a different title changes nothing.
    retitled = dict(batch)
    retitled["title"] = tf.constant(["something else entirely"] * 16)
    assert np.allclose(star_id(batch).numpy(), star_id(retitled).numpy(), atol=1e-6)
    assert not np.allclose(star(batch).numpy(), star(retitled).numpy(), atol=1e-6)


def test_content_history_embeds_items_by_their_catalogue_content(tiny_spec_path, tiny_splits):
    spec, log, transform, catalogue = _data(tiny_spec_path, tiny_splits)
    inputs = model_inputs(log, spec)
    model = _two_tower(spec, transform, catalogue, inputs, item_encoder="content")
    encoder = model.item_encoder
    keys = catalogue.keys[[3, 7, 3]]
    history = encoder.history_items(tf.constant([[keys[0], keys[1]], [keys[2], "unknown-item"]])).numpy()
    own = {k: v[[3, 7]] for k, v in catalogue.inputs(spec).items()}
    fields = encoder.content_fields(_tensors(own))
    expected = tf.concat([fields[k] for k in sorted(fields)], -1).numpy()
    np.testing.assert_allclose(history[0, 0], expected[0], atol=1e-6)
    np.testing.assert_allclose(history[0, 1], expected[1], atol=1e-6)
    np.testing.assert_allclose(history[1, 0], expected[0], atol=1e-6)   # the same item, the same vector
    assert np.isfinite(history[1, 1]).all()                                # unknown: the empty item's content
    # The query tower's history is the content history (never the item id table).
    assert model.encoder.history_items is not None
    assert all("item_id_embedding" not in v.name for v in model.trainable_variables)


def test_content_scores_do_not_change_when_item_ids_are_relabelled(content_run, tmp_path):
    folder, spec_path, splits = content_run
    rng = np.random.default_rng(3)
    relabel = {f"i{i}": f"x{j:03d}" for i, j in enumerate(rng.permutation(30))}  # new names, new order
    renamed = {}
    for name, path in splits.items():
        frame = pd.read_csv(path)
        frame["item_id"] = frame["item_id"].map(relabel)
        renamed[name] = tmp_path / f"{name}.csv"
        frame.to_csv(renamed[name], index=False)
    config = TrainConfig(model="two_tower", train=str(renamed["train"]), valid=str(renamed["valid"]),
                         test=str(renamed["test"]), epochs=1, batch_size=64,
                         hyperparameters={"item_encoder": "content", "hidden": [8], "embedding_dim": 8})
    train_run(spec_path, config, tmp_path / "run", log=lambda m: None)

    from mdrec.training.retrieval import candidate_embeddings, query_embeddings

    scores = []
    for run, test in ((folder / "run", splits["test"]), (tmp_path / "run", renamed["test"])):
        r = restore_for(run, test)
        q = query_embeddings(r.model, r.inputs)
        c = candidate_embeddings(r.model, r.model.catalogue)
        ids = r.model.catalogue.ids.astype(str)
        order = np.argsort([relabel.get(i, i) for i in ids])  # the same items in the same order
        scores.append(q @ c[order].T)
    assert scores[0].std() > 1e-3  # not a constant model
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)


def test_cold_items_get_distinct_non_degenerate_embeddings(content_run, tiny_spec_path, tiny_splits):
    folder, _, splits = content_run
    r = restore_for(folder / "run", splits["test"])
    spec, model, catalogue = r.spec, r.model, r.model.catalogue
    rows = _new_items(catalogue, spec)
    signature = candidate_signature(spec)
    cold = model.candidate_embedding(_tensors({k: v for k, v in rows.items() if k in signature})).numpy()
    assert np.isfinite(cold).all()
    towers = cold[:, :8]
    np.testing.assert_allclose(np.linalg.norm(towers, axis=1), 1.0, atol=1e-5)
    assert towers[0] @ towers[1] < 0.99                           # two different items, two directions
    warm = model.candidate_embedding(_tensors(catalogue.inputs(spec))).numpy()[:, :8]
    assert np.abs(warm @ towers.T).max() < 1 - 1e-4               # not a copy of a training item either

    # The id branch cannot tell them apart: both are the OOV row.
    spec0, log, transform, catalogue0 = _data(tiny_spec_path, tiny_splits)
    id_model = _two_tower(spec0, transform, catalogue0, model_inputs(log, spec0), item_encoder="id")
    ids = id_model.candidate_embedding(_tensors({k: v for k, v in rows.items() if k in signature})).numpy()
    np.testing.assert_allclose(ids[0], ids[1], atol=1e-7)


def test_text_encoders_mean_is_order_free_transformer_is_not_and_lsa_is_frozen(tiny_spec_path, tiny_splits):
    spec, log, transform, catalogue = _data(tiny_spec_path, tiny_splits)
    inputs = model_inputs(log, spec)
    batch = {k: v[:2] for k, v in inputs.items()}
    batch["title"] = np.array(["red 1 thing nr", "nr thing 1 red"], dtype=object)  # same words, other order
    fields = {}
    for text in ("mean", "transformer"):
        model = _two_tower(spec, transform, catalogue, inputs, item_encoder="content", text_encoder=text,
                           frozen_text="lsa")
        fields[text] = model.item_encoder.content_fields(_tensors(batch))
        frozen = model.item_encoder.frozen["title"]
        assert not frozen.trainable and frozen.weights[0] not in model.trainable_variables
        if text == "transformer":
            assert any("title_transformer" in v.name for v in model.trainable_variables)
    mean, transformer = fields["mean"]["title"].numpy(), fields["transformer"]["title"].numpy()
    np.testing.assert_allclose(mean[0], mean[1], atol=1e-6)
    assert not np.allclose(transformer[0], transformer[1], atol=1e-4)
    lsa = fields["mean"]["title:frozen"].numpy()
    np.testing.assert_allclose(lsa[0], lsa[1], atol=1e-6)  # a bag of words
    np.testing.assert_allclose(np.linalg.norm(lsa, axis=1), 1.0, atol=1e-5)


def test_lsa_vectors_put_texts_with_shared_words_closer():
    texts = ["red apple pie", "red apple tart", "blue steel engine", "steel engine parts", "apple pie recipe"]
    vectors = precompute_text_vectors(texts, "lsa", dim=3)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[2, 3] > similarity[2, 0] + 0.2
    table = lsa_token_table(texts, ["red", "apple"], 3, 8)
    assert table.shape == (4, 1) and not table[:2].any()  # padding and unknown rows stay zero
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(MdrecError, match="sentence-transformers"):
            precompute_text_vectors(texts, "sentence-transformers:all-MiniLM-L6-v2")


def test_item_encoder_mistakes_name_the_problem_and_the_fix(tiny_spec_path, tiny_splits):
    spec, log, transform, catalogue = _data(tiny_spec_path, tiny_splits)
    with pytest.raises(MdrecError, match="item_encoder must be one of auto, id, content, hybrid"):
        build_model("two_tower", spec, transform, catalogue=catalogue, item_encoder="bogus")
    with pytest.raises(MdrecError, match="text_encoder must be one of mean, transformer"):
        build_model("star", spec, transform, item_encoder="content", text_encoder="bert")
    bare = parse_spec({"name": "bare", "label": "click", "domain": "domain", "features": [
        {"name": "user_id", "role": "user_id", "type": "categorical"},
        {"name": "item_id", "role": "item_id", "type": "categorical"}]})
    bare_transform = Transform.fit(load_log(tiny_splits["train"], bare), bare)
    with pytest.raises(MdrecError, match=r"no feature with role item.*or use item_encoder=id"):
        build_model("star", bare, bare_transform, item_encoder="content")
    assert build_model("star", bare, bare_transform).item_encoder.mode == "id"  # auto: nothing to add
    assert build_model("star", spec, transform).item_encoder.mode == "hybrid"


def test_content_and_hybrid_exports_carry_the_vocabulary_and_serve_raw_text(content_run, tmp_path):
    from mdrec.training.inference import predict
    from mdrec.workflows.export import export_run

    folder, spec_path, splits = content_run
    export = export_run(folder / "run", "content", export_dir=tmp_path / "export")
    transform = json.loads((export / "assets" / "transform.json").read_text())
    assert "red" in transform["text"]["title"] and "thing" in transform["text"]["title"]
    r = restore_for(folder / "run", splits["test"])
    rows = _new_items(r.model.catalogue, r.spec)
    signature = candidate_signature(r.spec)
    rows = {k: v for k, v in rows.items() if k in signature}
    served = tf.saved_model.load(str(export)).signatures["item_embedding"]
    got = served(**_tensors(rows))["embedding"].numpy()
    np.testing.assert_allclose(got, r.model.candidate_embedding(_tensors(rows)).numpy(), atol=1e-5)
    retitled = dict(rows, title=np.array(["thing nr 4", "thing nr 4"], dtype=object))
    assert not np.allclose(served(**_tensors(retitled))["embedding"].numpy(), got, atol=1e-4)  # text is read

    # A hybrid CTR model (gate, Transformer text encoder) saved with the CTR serving signature.
    from mdrec.export.signatures import ctr_signature
    from mdrec.workflows.export.saved_model import save_for_serving

    spec, log, transform, catalogue = _data(spec_path, splits)
    inputs = model_inputs(log, spec)
    star = Star(spec, transform, hidden=(8,), aux_hidden=(4,), item_encoder="hybrid", hybrid_combine="gate",
                text_encoder="transformer")
    batch = {k: v[:32] for k, v in inputs.items()}
    expected = predict(star, batch)
    save_for_serving(star, tmp_path / "hybrid", {"serving_default": ctr_signature(star, spec)})
    served = tf.saved_model.load(str(tmp_path / "hybrid")).signatures["serving_default"]
    got = served(**_tensors(batch))["probability"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    batch["title"] = np.array(["zzz unseen words"] * 32, dtype=object)
    assert not np.allclose(served(**_tensors(batch))["probability"].numpy(), got, atol=1e-6)
