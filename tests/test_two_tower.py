"""Two-tower retrieval: the loss is the in-batch softmax it claims to be (logQ, accidental hits,
per-line negatives), metrics are computed as defined, the ranking never leaks, and a trained
run reloads to the same numbers."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras

from mdrec.cli import main
from mdrec.data.catalogue import Catalogue
from mdrec.data.log import DOMAIN, LABEL, TIME, Log, load_log
from mdrec.data.pipeline import model_inputs
from mdrec.data.transform import Transform
from mdrec.evaluation.ranking import (RankingQueries, SeenClicks, full_ranking, per_domain_table, ranking_queries,
                                      sampled_ranking)
from mdrec.layers.sampling import StreamingFrequencyEstimator
from mdrec.models.two_tower import TwoTower
from mdrec.spec import load_spec, with_domain_values
from mdrec.training.retrieval import in_batch_loss, train_inputs
from mdrec.training.run import TrainConfig
from mdrec.workflows.evaluate import evaluate_retrieval_run
from mdrec.workflows.restore import load_trained
from mdrec.workflows.train import train_run
from conftest import events, TINY_SPEC


def _model(tiny_spec_path, tiny_splits, **hyperparameters):
    spec = load_spec(tiny_spec_path)
    log = load_log(tiny_splits["train"], spec)
    transform = Transform.fit(log, spec)
    spec = with_domain_values(spec, transform.domains)
    catalogue = Catalogue.from_log(log, spec, transform.domains)
    model = TwoTower(spec, transform, catalogue, embedding_dim=8, hidden=(8,), **hyperparameters)
    inputs = model_inputs(log, spec)
    model.build_variables({k: v[:2] for k, v in inputs.items()})
    return model, spec, log, catalogue, inputs


def _softmax_loss(scores: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Mean cross-entropy of the diagonal, over the candidates ``keep`` allows per row."""
    scores = np.where(keep, scores, -np.inf) if keep is not None else scores
    shifted = scores - scores.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-np.diag(log_softmax).mean())


def _batch(inputs, rows):
    return {k: tf.constant(v[rows]) for k, v in inputs.items()}


def _towers(model, x):
    return model.query_embedding(x).numpy(), model.candidate_embedding(x).numpy()


def test_logq_correction_subtracts_log_frequency(tiny_spec_path, tiny_splits):
    rows = np.arange(8)
    plain, *_ = _model(tiny_spec_path, tiny_splits, logq="none", remove_accidental_hits=False, temperature=0.5)
    corrected, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, logq="frequency",
                                                     remove_accidental_hits=False, temperature=0.5)
    corrected.set_weights(plain.get_weights())
    x = _batch(inputs, rows)
    q, c = _towers(plain, x)
    scores = q @ c.T / 0.5
    probability = catalogue.sampling_probability()[catalogue.index_of(log.frame["item_id"].to_numpy()[rows])]
    assert len(np.unique(probability)) > 1  # the tiny batch has items of different frequency
    expected_plain = _softmax_loss(scores)
    expected_corrected = _softmax_loss(scores - np.log(probability)[None, :])
    assert float(plain.training_loss(x, None)) == pytest.approx(expected_plain, rel=1e-5)
    assert float(corrected.training_loss(x, None)) == pytest.approx(expected_corrected, rel=1e-5)
    assert abs(expected_corrected - expected_plain) > 1e-3


def test_accidental_hits_are_removed(tiny_spec_path, tiny_splits):
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, logq="none", temperature=1.0)
    items = log.frame["item_id"].to_numpy()
    first = 0
    twin = int(np.flatnonzero(items == items[first])[1])  # another row with the same item
    rows = np.array([first, twin] + [r for r in range(2, 10) if items[r] != items[first]])
    x = _batch(inputs, rows)
    q, c = _towers(model, x)
    same = items[rows][:, None] == items[rows][None, :]
    keep = ~same | np.eye(len(rows), dtype=bool)  # an in-batch copy of the positive is no negative
    assert float(model.training_loss(x, None)) == pytest.approx(_softmax_loss(q @ c.T, keep), rel=1e-5)
    assert _softmax_loss(q @ c.T, keep) != pytest.approx(_softmax_loss(q @ c.T), rel=1e-6)


def test_domain_negatives_only_contrast_items_of_the_querys_line(tiny_spec_path, tiny_splits):
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, logq="none", temperature=1.0,
                                                 remove_accidental_hits=False, negatives="domain")
    rows = np.arange(12)
    x = _batch(inputs, rows)
    q, c = _towers(model, x)
    line = pd.Index(catalogue.domains).get_indexer(log.frame[DOMAIN].to_numpy()[rows])
    item = catalogue.index_of(log.frame["item_id"].to_numpy()[rows])
    keep = catalogue.membership[line][:, item] | np.eye(len(rows), dtype=bool)
    assert not keep.all()  # some in-batch items are outside a query's line
    assert float(model.training_loss(x, None)) == pytest.approx(_softmax_loss(q @ c.T, keep), rel=1e-5)


def test_streaming_frequency_estimator_learns_occurrence_rates():
    estimator = StreamingFrequencyEstimator(buckets=16, alpha=0.05)
    for step in range(1000):  # alpha 0.05: the start-up bias has decayed by then
        ids = [1] + ([2] if step % 4 == 0 else []) + ([3] if step % 10 == 0 else [])
        estimator(tf.constant(ids, tf.int64), training=True)
    estimate = estimator(tf.constant([1, 2, 3], tf.int64)).numpy()
    np.testing.assert_allclose(estimate, [1.0, 0.25, 0.1], rtol=0.1)
    before = estimator.gap.numpy().copy()
    estimator(tf.constant([1, 2], tf.int64), training=False)  # serving never changes the state
    np.testing.assert_array_equal(before, estimator.gap.numpy())


def _queries(relevant, excluded, domain):
    return RankingQueries(np.arange(len(relevant)), np.asarray(domain), np.arange(len(relevant)).astype(object),
                          [np.asarray(r) for r in relevant], [np.asarray(e, dtype=np.int64) for e in excluded])


def test_full_ranking_metrics_by_hand():
    # 6 items; line 0 holds items 0-3, line 1 items 3-5.
    membership = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], bool)
    scores = np.array([[0.1, 0.9, 0.5, 0.3, 5.0, 5.0],      # query 0 (line 0): order 1, 2, 3, 0
                       [9.0, 0.0, 0.0, 0.2, 0.4, 0.3]])     # query 1 (line 1): order 4, 5, 3
    queries = _queries(relevant=[[2, 0], [3]], excluded=[[1], []], domain=[0, 1])
    out = full_ranking(lambda p: scores[p], queries, membership, ks=(1, 2, 3))
    # Query 0: item 1 excluded, ranking 2, 3, 0 (items 4, 5 are another line's despite their scores).
    assert out["recall@1"].tolist() == [0.5, 0.0]
    assert out["hr@2"].tolist() == [1.0, 0.0]
    assert out["recall@3"].tolist() == [1.0, 1.0]
    ideal = 1 + 1 / np.log2(3)
    assert out["ndcg@3"][0] == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    assert out["ndcg@3"][1] == pytest.approx((1 / np.log2(4)) / 1.0)
    table = per_domain_table(out, queries.domain, ["a", "b"])
    assert table.loc["ALL", "recall@1"] == 0.25 and table.loc["a", "queries"] == 1


def test_sampled_ranking_counts_ties_half_and_skips_known_items():
    membership = np.ones((1, 50), bool)
    queries = _queries(relevant=[[3]], excluded=[[7, 8]], domain=[0])
    constant = sampled_ranking(lambda p: np.zeros((len(p), 50)), queries, membership, ks=(10, 30),
                               negatives=40, seed=1)
    assert constant["hr@10"].tolist() == [0.0] and constant["hr@30"].tolist() == [1.0]  # rank 20 of 41
    assert constant["mrr"].tolist() == [1 / 21]  # 0-based rank 20 (40 ties counted half)
    # Items 7 and 8 (the user's own) outscore the positive; they must never be drawn as negatives.
    scores = np.zeros((1, 50))
    scores[0, 3], scores[0, [7, 8]] = 1.0, 10.0
    best = sampled_ranking(lambda p: np.repeat(scores, len(p), 0), queries, membership, ks=(1,), negatives=46)
    assert best["hr@1"].tolist() == [1.0] and best["ndcg@1"].tolist() == [1.0] and best["mrr"].tolist() == [1.0]
    # A line of 6 items offers each of the 5 others once, however many negatives are asked for:
    # constant scores then rank the positive in the middle of 6 (0-based 2.5), not of 1,000.
    small = sampled_ranking(lambda p: np.zeros((len(p), 6)), _queries(relevant=[[0]], excluded=[[]], domain=[0]),
                            np.ones((1, 6), bool), ks=(2, 3), negatives=999)
    assert small["hr@2"].tolist() == [0.0] and small["hr@3"].tolist() == [1.0] and small["mrr"].tolist() == [1 / 3.5]


def test_ranking_queries_use_first_click_and_remove_seen_items(tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    frame = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u2", "u2", "u2"],
                          "item_id": ["i1", "i2", "i3", "i9", "i8", "i9", "i3"],
                          DOMAIN: ["a"] * 7, LABEL: [1, 1, 0, 1, 1, 1, 1], TIME: [30, 20, 10, 5, 6, 7, 8]})
    test = Log(frame)
    train = Log(pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], DOMAIN: ["a", "a"],
                              LABEL: [1, 1], TIME: [1, 1]}))
    catalogue = Catalogue(pd.DataFrame({"__item_key__": ["i1", "i2", "i3"], DOMAIN: ["a"] * 3,
                                        "item_id": ["i1", "i2", "i3"]}), {}, ["a"],
                          np.ones((1, 3), bool), np.ones((1, 3), np.int64), "item_id")
    queries = ranking_queries(test, spec, catalogue, seen=[train])
    # u1: clicked i2 (t=20) then i1 (t=30, a re-click of a training item: not counted); i3 not clicked.
    assert queries.users.tolist() == ["u1", "u2"]
    assert queries.rows.tolist() == [1, 3]  # the first click in time is the query row
    # u2's i9 (twice) and i8 are outside the catalogue: two targets, each missed by any ranking
    assert [r.tolist() for r in queries.relevant] == [[1], [-1, -1, 2]]
    assert [sorted(e.tolist()) for e in queries.excluded] == [[0], [1]]
    assert queries.counts["repeat_targets_removed"] == 1
    assert queries.counts["targets_outside_catalogue"] == 2
    recall = full_ranking(lambda rows: np.zeros((len(rows), 3)), queries, np.ones((1, 3), bool), ks=(10,))
    assert recall["recall@10"].tolist() == [1.0, 1 / 3]      # u2: i3 found, i8 and i9 cannot be
    # The seen pairs made once (SeenClicks, for many rankings) remove exactly what the logs do.
    again = ranking_queries(test, spec, catalogue, seen=SeenClicks.of([train], spec, catalogue))
    assert [e.tolist() for e in again.excluded] == [e.tolist() for e in queries.excluded]
    assert [r.tolist() for r in again.relevant] == [[1], [-1, -1, 2]] and again.counts == queries.counts


def test_catalogue_round_trip_and_membership(tmp_path, tiny_spec_path, tiny_splits):
    spec = load_spec(tiny_spec_path)
    log = load_log(tiny_splits["train"], spec)
    catalogue = Catalogue.from_log(log, spec, ["a", "b", "c"])
    frame = log.frame
    for d, line in enumerate(["a", "b", "c"]):
        expected = set(frame.loc[frame[DOMAIN] == line, "item_id"])
        assert set(catalogue.ids[catalogue.membership[d]]) == expected
        clicks = frame[(frame[DOMAIN] == line) & (frame[LABEL] == 1)]["item_id"].value_counts()
        got = dict(zip(catalogue.ids, catalogue.positives[d]))
        assert all(got[item] == count for item, count in clicks.items())
    catalogue.save(tmp_path / "c.parquet")
    loaded = Catalogue.load(tmp_path / "c.parquet", spec, ["a", "b", "c"])
    np.testing.assert_array_equal(loaded.membership, catalogue.membership)
    for name, values in catalogue.inputs(spec).items():
        np.testing.assert_array_equal(loaded.inputs(spec)[name], values)


def test_two_tower_run_trains_reloads_and_evaluates_the_same(tmp_path, tiny_spec_path, tiny_splits, capsys):
    config = TrainConfig(model="two_tower", train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                         test=str(tiny_splits["test"]), epochs=3, batch_size=16, learning_rate=1e-2,
                         patience=5, checkpoint_every=5,
                         hyperparameters={"embedding_dim": 8, "hidden": [8], "temperature": 0.2})
    metrics = train_run(tiny_spec_path, config, tmp_path / "tt", log=lambda *_: None)
    history = json.loads((tmp_path / "tt" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["family"] == "retrieval" and metrics["catalogue_items"] > 0
    # TensorBoard: the early-stopping curve is history's score; recall and NDCG per line beside it.
    curves = events(tmp_path / "tt" / "tensorboard" / "validation")
    assert [v for _, v in curves["recall@50"]] == pytest.approx([h["valid_recall@50"] for h in history])
    lines = sorted(metrics["catalogue_per_line"])
    assert {f"{m}/{d}" for m in ("recall@10", "ndcg@10", "recall@50") for d in lines} <= set(curves)
    assert (tmp_path / "tt" / "tensorboard" / "embeddings" / "item_id.tsv").is_file()
    # The validation loss is the training loss's definition on the validation clicks, in inference
    # mode: the mean of the batch losses, a batch of one (no in-batch negative) left out.
    assert len(curves["loss"]) == len(history) and all(v > 0 for _, v in curves["loss"])
    _, _, spec, _, model = load_trained(tmp_path / "tt")
    clicks = train_inputs(load_log(tiny_splits["valid"], spec), spec, None)[0]
    part = lambda a, b: {k: v[a:b] for k, v in clicks.items()}  # noqa: E731
    expected = np.mean([float(model.training_loss(part(0, 8), None, training=False)),
                        float(model.training_loss(part(8, 16), None, training=False))])
    assert in_batch_loss(model, part(0, 17), 8) == pytest.approx(expected, rel=1e-5)
    result = evaluate_retrieval_run(tmp_path / "tt", tiny_splits["test"], sampled=True, negatives=10)
    record = result.record
    pd.testing.assert_frame_equal(pd.DataFrame(record["full"]["model"]), pd.DataFrame(metrics["tables"]["test"]))
    assert record["removed_from_ranking"] == ["train", "valid"]
    sampled = pd.DataFrame(record["sampled"]["model"]).set_index("domain")
    assert 0 <= sampled.loc["ALL", "hr@10"] <= 1
    assert main(["evaluate", "--run", str(tmp_path / "tt"), "--data", str(tiny_splits["test"]), "--sampled",
                 "--negatives", "10"]) == 0
    out = capsys.readouterr().out
    assert "SAMPLED protocol" in out and "baseline: popularity per line" in out


def test_two_tower_rejects_bad_parameters(tmp_path, tiny_spec_path, tiny_splits, capsys):
    code = main(["train", "--model", "two_tower", "--spec", str(tiny_spec_path), "--train",
                 str(tiny_splits["train"]), "--out", str(tmp_path / "bad"), "--param", "logq=sometimes"])
    assert code == 2
    assert "logq must be one of frequency, streaming, none" in capsys.readouterr().err


def test_params_read_numbers_lists_and_words():
    from mdrec.cli.commands import parse_params

    assert parse_params(["embeddings_l2=1e-4", "hidden=[64, 32]", "logq=none", "item_bias=false", "k=3"]) == {
        "embeddings_l2": 1e-4, "hidden": [64, 32], "logq": "none", "item_bias": False, "k": 3}


def test_one_number_for_a_list_parameter_is_a_list_of_one(tiny_spec_path, tiny_splits):
    from mdrec.models.registry import build_model

    # "--param hidden=128" parses as the number 128: the towers get one hidden layer of 8 here.
    _, spec, log, catalogue, _ = _model(tiny_spec_path, tiny_splits)
    model = build_model("two_tower", spec, Transform.fit(log, spec), catalogue=catalogue, hidden=8, embedding_dim=4)
    model.build_variables({k: v[:2] for k, v in model_inputs(log, spec).items()})
    assert [w.shape[1] for w in model.query_tower.mlp.trainable_weights if len(w.shape) == 2] == [8]


class _Crash(Exception):
    pass


def test_uniform_negatives_join_the_softmax_with_the_mixed_logq(tiny_spec_path, tiny_splits):
    sampled = 6
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, logq="frequency", temperature=0.5,
                                                 uniform_negatives=sampled)
    rows = np.arange(8)
    x = _batch(inputs, rows)
    # The catalogue rows the step will draw: the same generator from the same state.
    twin = tf.random.Generator.from_state(model.sampler.state.numpy(), alg=model.sampler.algorithm)
    drawn = twin.uniform([sampled], maxval=len(catalogue), dtype=tf.int64).numpy()
    extra = {k: tf.constant(v[drawn]) for k, v in catalogue.inputs(spec).items()}
    q = model.query_embedding(x).numpy()
    c = np.concatenate([model.candidate_embedding(x).numpy(), model.candidate_embedding(extra).numpy()])
    items = np.concatenate([catalogue.index_of(log.frame["item_id"].to_numpy()[rows]), drawn])
    # Each candidate's expected share of the mixed set: p + M / (B N).
    share = catalogue.sampling_probability()[items] + sampled / (len(rows) * len(catalogue))
    positive = np.eye(len(rows), len(items), dtype=bool)
    keep = (items[:len(rows), None] != items[None, :]) | positive   # an accidental hit is no negative
    scores = np.where(keep, q @ c.T / 0.5 - np.log(share)[None, :], -np.inf)
    expected = float(-(scores[positive] - np.log(np.exp(scores).sum(1))).mean())
    assert float(model.training_loss(x, None)) == pytest.approx(expected, rel=1e-5)
    # The validation loss stays in-batch (no draw, so the same value twice).
    assert float(model.training_loss(x, None, training=False)) == float(model.training_loss(x, None, training=False))


def _tt_config(paths, **overrides):
    base = dict(model="two_tower", train=str(paths["train"]), valid=str(paths["valid"]), test=str(paths["test"]),
                epochs=3, batch_size=16, learning_rate=1e-2, patience=5, checkpoint_every=4,
                hyperparameters={"embedding_dim": 8, "hidden": [8], "logq": "streaming"})
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("extra", [{}, {"uniform_negatives": 8}])
def test_two_tower_resumes_after_a_crash_exactly(tmp_path, tiny_spec_path, tiny_splits, extra):
    quiet = lambda *_: None  # noqa: E731
    config = _tt_config(tiny_splits, hyperparameters={**_tt_config(tiny_splits).hyperparameters, **extra})
    full = train_run(tiny_spec_path, config, tmp_path / "full", log=quiet)

    def crash(step):
        if step == 14:  # mid-epoch 2, two steps after the step-12 checkpoint
            raise _Crash()

    with pytest.raises(_Crash):
        train_run(tiny_spec_path, config, tmp_path / "crashed", log=quiet, on_batch=crash)
    messages = []
    resumed = train_run(tiny_spec_path, config, tmp_path / "crashed", log=messages.append)
    assert any("resuming from" in m for m in messages)
    # The streaming estimator's state and the negatives' generator are part of the checkpoint, so
    # the resumed run is the same run.
    losses = [[h["train_loss"] for h in json.loads((tmp_path / run / "history.json").read_text())]
              for run in ("full", "crashed")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    pd.testing.assert_frame_equal(pd.DataFrame(resumed["tables"]["test"]), pd.DataFrame(full["tables"]["test"]))


def test_index_command_reports_and_saves_a_routed_index(tmp_path, tiny_spec_path, tiny_splits, capsys):
    from mdrec.retrieval.domain_index import load_domain_index

    train_run(tiny_spec_path, _tt_config(tiny_splits, epochs=1), tmp_path / "tt", log=lambda *_: None)
    assert main(["index", "--run", str(tmp_path / "tt"), "--kind", "brute_force", "--k", "3",
                 "--queries", "300"]) == 0
    out = capsys.readouterr().out
    assert "recall@3 vs exact" in out and "speed-up@1" in out
    report = json.loads((tmp_path / "tt" / "index" / "brute_force.json").read_text())
    assert report["measured"]["brute_force"]["recall_at_k"] == 1.0
    assert report["measured"]["scann"]["recall_at_k"] >= 0.9
    # Paths in the record: the index beside it by name, the run and the queries' log absolute.
    assert report["saved"] == "brute_force" and Path(report["run"]).is_absolute()
    assert Path(report["query_source"]).is_absolute()
    assert f"saved the brute_force index: {tmp_path / 'tt' / 'index' / 'brute_force'}" in out
    index = load_domain_index(tmp_path / "tt" / "index" / "brute_force")
    catalogue = Catalogue.load(tmp_path / "tt" / "catalogue.parquet", load_spec(tmp_path / "tt" / "spec.yaml"),
                               ["a", "b", "c"])
    queries = np.random.default_rng(0).normal(size=(6, report_dim(index))).astype(np.float32)
    _, ids = index.search(tf.constant(queries), tf.constant([0, 1, 2, 0, 1, 2], tf.int32))
    for line, row in zip([0, 1, 2, 0, 1, 2], ids.numpy().astype(str)):
        assert set(row) <= set(catalogue.ids[catalogue.membership[line]])
    # A CTR run has no catalogue to index: one clear line, exit 2.
    (tmp_path / "ctr").mkdir()
    config = json.loads((tmp_path / "tt" / "config.json").read_text())
    config["config"]["model"] = "star"
    (tmp_path / "ctr" / "config.json").write_text(json.dumps(config))
    assert main(["index", "--run", str(tmp_path / "ctr")]) == 2
    assert "an index needs a retrieval run (two_tower); this run is a 'star' model" in capsys.readouterr().err


def report_dim(index) -> int:
    return int(index.signatures["serving_default"].structured_input_signature[1]["queries"].shape[1])


def test_specs_without_time_use_training_profiles_and_never_held_out_clicks(tmp_path, tiny_splits):
    from mdrec.workflows.restore import evaluation_context, load_trained

    spec_path = tmp_path / "no_time.yaml"
    spec_path.write_text(TINY_SPEC.replace("time: {column: ts}\n", ""))
    assert "time:" not in spec_path.read_text()
    train_run(spec_path, _tt_config(tiny_splits, epochs=1), tmp_path / "tt", log=lambda *_: None)
    run, config, spec, transform, model = load_trained(tmp_path / "tt")
    test, history, _, context = evaluation_context(config, spec, transform, tiny_splits["test"], need_context=True)
    train = context["train"].frame
    clicked = train[train["__label__"] == 1].groupby("user_id")["item_id"].apply(set).to_dict()
    test_clicks = test.frame[test.frame["__label__"] == 1]
    assert len(test_clicks) > 0
    for row, (user, item) in enumerate(zip(test.frame["user_id"], test.frame["item_id"])):
        profile = {h for h in history[row] if h}
        assert profile <= clicked.get(user, set())       # training clicks only, no held-out click
        assert item not in profile


def test_shared_towers_score_the_history_against_rows_of_one_item_table(tiny_spec_path, tiny_splits):
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, towers="shared", item_bias=False)
    assert model.item_encoder.mode == "id"      # auto resolves to ids: both sides are rows of the id table
    assert model.embedding_dim == spec.item_id.embedding_dim and model.query_tower is None
    rows = np.arange(300, 306)   # late rows: their users have earlier clicks
    x = _batch(inputs, rows)
    q, c = _towers(model, x)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    item = spec.item_id
    own = model.encoder.embed_ids(item, tf.constant(log.frame["item_id"].to_numpy()[rows].astype(str))).numpy()
    np.testing.assert_allclose(c, unit(own), rtol=1e-5, atol=1e-6)
    history = inputs[spec.sequence.name][rows]
    for row, keys in enumerate(history):
        keys = [k for k in keys if k != ""]
        if keys:  # the mean of the clicked items' rows of the same table, normalised
            vectors = model.encoder.embed_ids(item, tf.constant(np.asarray(keys, dtype=str))).numpy()
            np.testing.assert_allclose(q[row], unit(vectors.mean(0)), rtol=1e-5, atol=1e-6)
    assert any(k != "" for keys in history for k in keys)


@pytest.mark.parametrize("params, message", [
    ({"towers": "mixed"}, "towers must be one of mlp, shared, sequence"),
    ({"towers": "sequence", "item_encoder": "hybrid"}, "towers=sequence reads the item id table"),
    ({"towers": "shared", "item_encoder": "hybrid"}, "towers=shared reads the item id table, and item_encoder=hybrid"),
    # a pretrained user encoder would be silently ignored by towers that read no user input
    ({"towers": "shared", "user_feature": tf_keras.layers.Dense(2)}, "towers=shared reads no user input"),
    ({"towers": "sequence", "user_feature": tf_keras.layers.Dense(2)}, "use towers=mlp to transfer it"),
])
def test_shared_towers_refuse_what_they_cannot_read(tiny_spec_path, tiny_splits, params, message):
    with pytest.raises(ValueError, match=message):
        _model(tiny_spec_path, tiny_splits, **params)


def test_sequence_towers_read_the_history_in_order_and_score_rows_of_the_encoders_item_table(
        tiny_spec_path, tiny_splits):
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, towers="sequence", item_bias=False)
    assert model.item_encoder.mode == "id" and model.query_tower is None and model.embedding_dim == 8
    history = inputs[spec.sequence.name]
    rows = np.flatnonzero((history != "").sum(1) >= 2)[:4]   # rows with at least two earlier clicks
    assert len(rows) == 4
    x = _batch(inputs, rows)
    q, c = _towers(model, x)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    encoder = model.sequence_encoder
    own = encoder.item_embedding(encoder.item_ids(tf.constant(log.frame["item_id"].to_numpy()[rows].astype(str))))
    np.testing.assert_allclose(c, unit(own.numpy()), rtol=1e-5, atol=1e-6)
    # SASRec's causal state at the newest item: the order of the clicks matters (a mean would not
    # see it), and neither the user id nor anything after the history does.
    swapped = history[rows].copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    q_swapped = model.query_embedding({**x, spec.sequence.name: tf.constant(swapped)}).numpy()
    assert np.abs(q_swapped - q).max() > 1e-4
    other_users = model.query_embedding({**x, "user_id": tf.constant(["nobody"] * len(rows))}).numpy()
    np.testing.assert_allclose(other_users, q, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("towers", ["shared", "sequence"])
def test_a_query_without_history_is_scored_by_the_lines_training_popularity(tiny_spec_path, tiny_splits, towers):
    model, spec, log, catalogue, inputs = _model(tiny_spec_path, tiny_splits, towers=towers, temperature=0.1)
    lines = len(catalogue.domains)
    width = spec.item_id.embedding_dim if towers == "shared" else 8
    assert model.embedding_dim == width + 2 * lines      # tower, offsets, the fixed prior
    history = inputs[spec.sequence.name]
    rows = np.concatenate([np.flatnonzero((history != "").any(1))[:3], np.flatnonzero((history == "").all(1))[:3]])
    x = _batch(inputs, rows)
    x[spec.sequence.name] = tf.constant(np.where(np.arange(6)[:, None] < 3, history[rows], ""))
    q = model.query_embedding(x).numpy()
    c = model.candidate_embedding({k: tf.constant(v) for k, v in catalogue.inputs(spec).items()}).numpy()
    line = catalogue.domains.index
    for row, domain in enumerate(log.frame[DOMAIN].to_numpy()[rows]):
        one_hot = np.eye(lines)[line(domain)]
        if row < 3:   # a history: the tower and the line against the offsets, nothing on the prior
            np.testing.assert_allclose(q[row, width:], np.concatenate([one_hot, np.zeros(lines)]))
            assert np.abs(q[row, :width]).max() > 0
            continue
        # No history: 0.1 x the centred log of (clicks + 0.5) over the line's clicks, by hand.
        np.testing.assert_allclose(q[row], np.concatenate([np.zeros(width + lines), one_hot]))
        clicks = catalogue.positives[line(domain)] + 0.5
        frequency = clicks / clicks.sum()
        items = catalogue.membership[line(domain)]
        scores = q[row] @ c.T
        expected = 0.1 * (np.log(frequency) - np.log(frequency).mean())
        # the prior is centred over the item table (padding and OOV rows too): compare differences
        np.testing.assert_allclose(np.diff(scores[items]), np.diff(expected[items]), rtol=1e-4, atol=1e-6)
        assert np.array_equal(np.argsort(-scores[items], kind="stable"),
                              np.argsort(-catalogue.positives[line(domain)][items], kind="stable"))
    learned = TwoTower(spec, model.encoder.transform, catalogue, embedding_dim=8, hidden=(8,), towers=towers,
                       no_history="learned")
    assert learned.embedding_dim == width + lines


def test_sequence_towers_need_a_history(tiny_spec_path, tiny_splits):
    spec = load_spec(tiny_spec_path)
    log = load_log(tiny_splits["train"], spec)
    transform = Transform.fit(log, spec)
    bare = dataclasses.replace(with_domain_values(spec, transform.domains), sequence=None)
    with pytest.raises(ValueError, match="towers=sequence scores an item against the user's history"):
        TwoTower(bare, transform, Catalogue.from_log(log, bare, transform.domains), towers="sequence")


def test_sequence_towers_train_reload_and_export_to_the_same_ranking(tmp_path, tiny_spec_path, tiny_splits):
    from mdrec.data.pipeline import model_inputs as inputs_of
    from mdrec.models.two_tower import query_signature
    from mdrec.retrieval.exact import exact_top_k
    from mdrec.training.retrieval import candidate_embeddings, query_embeddings
    from mdrec.workflows.export import export_run
    from mdrec.workflows.restore import evaluation_log, restore_trained

    config = TrainConfig(model="two_tower", train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                         test=str(tiny_splits["test"]), epochs=2, batch_size=16, learning_rate=1e-2, patience=5,
                         hyperparameters={"embedding_dim": 8, "towers": "sequence", "sequence_layers": 1})
    metrics = train_run(tiny_spec_path, config, tmp_path / "seq", log=lambda *_: None)
    history = json.loads((tmp_path / "seq" / "history.json").read_text())
    assert np.isfinite([h["train_loss"] for h in history]).all()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    result = evaluate_retrieval_run(tmp_path / "seq", tiny_splits["test"])
    pd.testing.assert_frame_equal(pd.DataFrame(result.record["full"]["model"]), pd.DataFrame(metrics["tables"]["test"]))

    export = export_run(tmp_path / "seq", "seq", export_dir=tmp_path / "export", index="brute_force", top_k=3)
    run, config, spec, transform, model = load_trained(tmp_path / "seq")
    log, test_history, _ = evaluation_log(config, spec, transform, tiny_splits["test"])
    inputs = inputs_of(log, spec, test_history)
    restore_trained(model, run, inputs)
    query = {k: v for k, v in inputs.items() if k in query_signature(spec)}
    domain = np.searchsorted(model.catalogue.domains, log.frame[DOMAIN].to_numpy(dtype=str))
    scores, _ = exact_top_k(query_embeddings(model, query), candidate_embeddings(model, model.catalogue), 3,
                            membership=model.catalogue.membership, query_domain=domain)
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        **{k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in query.items()})
    np.testing.assert_allclose(served["scores"].numpy(), scores, rtol=1e-5, atol=1e-5)
