"""User-encoder pretraining: masking never leaks, causal encoders are causal, fresh adapters are the
identity, the losses fall on a learnable sequence set, runs resume, the encoder and its export
reload with the same outputs, and bad input gives one clear error."""
from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.special

from conftest import events

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.cli import build_parser, main
from mdrec.errors import MdrecError
from mdrec.models.user_encoder import SPECIAL_ROWS, UserEncoder
from mdrec.pretraining import objectives as obj
from mdrec.pretraining.batches import SequenceBatches
from mdrec.pretraining.data import Queries, SourceData, held_out_queries
from mdrec.models.user_vectors import encoder_vectors
from mdrec.pretraining.evaluation import RankingTask, ranking_metrics
from mdrec.pretraining.model import PretrainModel
from mdrec.workflows.pretrain import pretrain_run
from mdrec.workflows.pretrained import load_pretrained

SEQ_SPEC = textwrap.dedent("""
    name: sequences
    label: {column: click}
    domain: {column: domain}
    time: {column: ts}
    features:
      - {name: user_id, role: user_id, type: categorical}
      - {name: item_id, role: item_id, type: categorical}
      - {name: category, role: item, type: categorical}
      - {name: city, role: user, type: categorical}
""")
ITEMS = [f"i{i}" for i in range(12)]
ATTRIBUTES = {"category": {"vocabulary": ["c0", "c1", "c2"], "items": [f"c{i % 3}" for i in range(12)]}}


def sequence_log(users: int = 48, length: int = 8, seed: int = 0) -> pd.DataFrame:
    """A learnable log: user u clicks i(s), i(s + d), i(s + 2d), ... (mod 12) from s = u mod 12 with
    step d = 1 + (u // 12) mod 5, one click per hour, with an unclicked impression between clicks;
    line "b" has impressions but no click."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for k in range(length):
            item = (u + k * (1 + (u // 12) % 5)) % 12
            rows.append((f"u{u}", f"i{item}", "a", 1, 1_000_000 + 3600 * (u * length + k), f"c{item % 3}"))
            other = int(rng.integers(0, 12))
            rows.append((f"u{u}", f"i{other}", "a", 0, 1_000_000 + 3600 * (u * length + k) + 60, f"c{other % 3}"))
        rows.append((f"u{u}", "i0", "b", 0, 1_000_000 + 3600 * (u * length + length), "c0"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "click", "ts", "category"])
    frame["city"] = "x"
    return frame


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    (root / "spec.yaml").write_text(SEQ_SPEC)
    sequence_log().to_csv(root / "log.csv", index=False)
    return root


@pytest.fixture(scope="module")
def mlm_run(data):
    out = data / "mlm"
    metrics = pretrain_run(data / "spec.yaml", data / "log.csv", out, objective="mlm", domains=["a"],
                           attributes=["category"], dim=16, layers=1, heads=2, max_length=8, epochs=2,
                           batch_size=16, learning_rate=5e-3, negatives=0, time_buckets=4, log=lambda *_: None)
    return out, metrics


def _encoder(architecture="transformer", **kwargs) -> UserEncoder:
    tf_keras.utils.set_random_seed(0)
    return UserEncoder(ITEMS, architecture=architecture, dim=16, layers=2, heads=2, max_length=8, dropout=0.0,
                       attributes=ATTRIBUTES, **kwargs)


def _ids(rows=6, length=8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(SPECIAL_ROWS, SPECIAL_ROWS + len(ITEMS), (rows, length)).astype(np.int32)
    lengths = rng.integers(0, length + 1, rows)
    lengths[0] = length
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0  # right padding
    return ids


def test_masking_never_leaks_the_target():
    ids = _ids(rows=200, seed=1)
    mask_id = SPECIAL_ROWS + len(ITEMS)
    inputs, positions, targets, weights = (t.numpy() for t in obj.mlm_mask(
        ids, 0.3, tf.random.Generator.from_seed(3), mask_id))
    assert positions.shape == (200, obj.mask_slots(8, 0.3)) == (200, 3)
    chosen = np.zeros(ids.shape, bool)
    for row in range(len(ids)):
        chosen[row, positions[row][weights[row] > 0]] = True
    lengths = (ids != 0).sum(1)
    # round(0.3 n) picks per row, at least one, each position at most once.
    np.testing.assert_array_equal((weights > 0).sum(1), np.where(lengths > 0, np.maximum(np.round(0.3 * lengths), 1), 0))
    np.testing.assert_array_equal(chosen.sum(1), (weights > 0).sum(1))
    assert not chosen[ids == 0].any()                                   # padding is never masked
    assert (inputs[chosen] == mask_id).all()                            # a masked input is [MASK] ...
    assert (inputs[~chosen] == ids[~chosen]).all()                      # ... and nothing else changes
    picked = np.take_along_axis(ids, positions, axis=1)
    assert (targets[weights > 0] == picked[weights > 0]).all() and (targets[weights == 0] == 0).all()
    assert (np.take_along_axis(inputs, positions, axis=1)[weights > 0] != targets[weights > 0]).all()
    # mask_last 1: every non-empty row's newest item is among the picks (the next-item query's case).
    _, positions, _, weights = (t.numpy() for t in obj.mlm_mask(ids, 0.3, tf.random.Generator.from_seed(3), mask_id,
                                                                 last=1.0))
    for row in np.flatnonzero(lengths):
        assert lengths[row] - 1 in positions[row][weights[row] > 0]
    # The masked position's attribute is the [MASK] row too: its category cannot leak.
    encoder = _encoder()
    assert int(encoder.attribute_ids("category", tf.constant([mask_id]))[0]) == len(ATTRIBUTES["category"]["vocabulary"]) + 2

    # Slots with weight 0 do not count in the loss, whatever target they hold.
    model = PretrainModel(encoder, "mlm", negatives=0, seed=0)
    model.build_variables({})
    states = tf.gather(encoder.encode_ids(inputs)[0], positions, batch_dims=1)
    loss = model.item_loss(states, tf.constant(targets), tf.constant(weights))
    scrambled = np.where(weights > 0, targets, np.random.default_rng(0).integers(2, mask_id, targets.shape)).astype(np.int32)
    assert float(loss) == pytest.approx(float(model.item_loss(states, tf.constant(scrambled), tf.constant(weights))),
                                        abs=1e-6)


def test_next_item_pairs_read_the_past_and_predict_the_next_item():
    window = np.array([[5, 6, 7, 8], [9, 3, 0, 0], [4, 0, 0, 0]], np.int32)
    inputs, targets, weights = (t.numpy() for t in obj.next_item_pairs(window))
    np.testing.assert_array_equal(inputs, [[5, 6, 7], [9, 3, 0], [4, 0, 0]])
    np.testing.assert_array_equal(targets, [[6, 7, 8], [3, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])


def test_full_softmax_loss_is_the_cross_entropy_over_the_whole_vocabulary():
    hidden = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    table = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bias = tf.constant([0.0, 0.5, -0.5])
    got = obj.item_softmax_loss(hidden, tf.constant([2, 1]), table, bias, 0, tf.random.Generator.from_seed(0)).numpy()
    logits = np.array([[1.0, 0.5, 0.5], [0.0, 2.5, 1.5]])  # hidden . table + bias, by hand
    expected = np.log(np.exp(logits).sum(1)) - logits[[0, 1], [2, 1]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_softmax_can_leave_the_sequence_s_other_items_out():
    # Window rows: 0 padding, 1 OOV, 2.. items 0..; window 0 holds items 0 and 1, window 1 item 2.
    window = tf.constant([[2, 3, 0], [4, 4, 1]])
    np.testing.assert_array_equal(obj.window_items(window, 4).numpy(), [[1, 1, 0, 0], [0, 0, 1, 0]])
    states = tf.constant([[[1.0, 0.0]], [[0.0, 1.0]]])           # one position per window
    table = tf.constant([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    bias = tf.zeros([4])
    got = obj.seen_excluded_loss(states, tf.constant([[1], [2]]), table, bias, obj.window_items(window, 4)).numpy()
    # Window 0 predicts item 1 (logit 1) against items 2, 3 (logits 0, 0): item 0 is the user's own.
    # Window 1 predicts item 2 (logit 3) against items 0, 1, 3 (logits 0, 0, 1).
    expected = [np.log(np.exp(1) + 2) - 1, np.log(np.exp(3) + 2 + np.e) - 3]
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)


def test_the_seen_excluded_gradient_is_the_softmax_over_the_unseen_items_and_the_target():
    # One window holding items 0 and 1, one position predicting item 1, scores near 100 (a bare exp
    # overflows float32). d loss / d score = p over {target, unseen items}, minus 1 at the target.
    seen = obj.window_items(tf.constant([[2, 3]]), 4)
    table = tf.constant([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    bias = tf.constant([0.0, 0.0, 0.0, 97.0])
    states = tf.Variable([[[100.0, 0.0]]])
    with tf.GradientTape() as tape:
        loss = obj.seen_excluded_loss(states, tf.constant([[1]]), table, bias, seen)
    scores = np.array([100.0, 0.0, 97.0])  # items 1 (target), 2, 3
    np.testing.assert_allclose(loss.numpy()[0, 0], scipy.special.logsumexp(scores) - scores[0], rtol=1e-6)
    d_scores = scipy.special.softmax(scores) - np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(tape.gradient(loss, states).numpy()[0, 0], d_scores @ table.numpy()[1:], atol=1e-6)


def test_mask_pooling_scores_the_next_item_after_the_history():
    encoder = _encoder()  # bidirectional: pooling defaults to an appended [MASK]
    assert encoder.pooling == "mask"
    mask = encoder.mask_id
    ids = tf.constant([[2, 3, 0, 0], [2, 3, 4, 5], [0, 0, 0, 0]], tf.int32)
    appended, _ = encoder.append_mask(ids)
    # The [MASK] follows the last item; a full row drops its oldest item to make room.
    np.testing.assert_array_equal(appended.numpy(), [[2, 3, mask, 0], [3, 4, 5, mask], [mask, 0, 0, 0]])
    times = tf.constant([[10, 20, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0]], tf.int64)
    np.testing.assert_array_equal(encoder.append_mask(ids, times)[1].numpy()[:2], [[10, 20, 20, 0], [2, 3, 4, 4]])
    # The user vector is the [MASK] position's state, and item_scores is vector . item table + bias.
    states, _ = encoder.encode_ids(appended)
    vectors = encoder.vectors_of_ids(ids).numpy()
    np.testing.assert_allclose(vectors, states.numpy()[[0, 1, 2], [2, 3, 0]], atol=1e-6)
    encoder.item_bias.assign(np.linspace(-1, 1, len(ITEMS)).astype(np.float32))
    scores = encoder.item_scores(tf.constant(vectors)).numpy()
    table = encoder.item_output_table().numpy()
    np.testing.assert_allclose(scores, vectors @ table.T + encoder.item_bias.numpy(), atol=1e-5)


@pytest.mark.parametrize("architecture,kwargs", [("nextitnet", {}), ("transformer", {"causal": True})])
def test_autoregressive_encoder_is_causal(architecture, kwargs):
    encoder = _encoder(architecture, time_buckets=4, **kwargs)
    ids = _ids(rows=4, seed=2)
    ids[:] = np.where(ids == 0, SPECIAL_ROWS, ids)  # full length, so every position is real
    times = np.cumsum(np.random.default_rng(0).integers(60, 90_000, ids.shape), axis=1)
    base = encoder.encode_ids(ids, tf.constant(times))[0].numpy()
    for t in range(1, ids.shape[1]):
        changed, changed_times = ids.copy(), times.copy()
        changed[:, t:] = SPECIAL_ROWS + (ids[:, t:] - SPECIAL_ROWS + 5) % len(ITEMS)
        changed_times[:, t:] += 7 * 86_400
        out = encoder.encode_ids(changed, tf.constant(changed_times))[0].numpy()
        np.testing.assert_allclose(out[:, :t], base[:, :t], atol=1e-6)  # earlier outputs never move
        assert np.abs(out[:, t] - base[:, t]).max() > 1e-4                 # the changed position does


@pytest.mark.parametrize("architecture,kwargs", [("transformer", {}), ("transformer", {"pooling": "mean"}),
                                                 ("nextitnet", {})])
def test_fresh_adapter_is_identity(architecture, kwargs):
    encoder = _encoder(architecture, **kwargs)
    items = tf.constant([["i1", "i2", "i3", "", "", "", "", ""], ["i4"] * 8, [""] * 8])
    before, states_before = encoder({"items": items}).numpy(), encoder.sequence_output({"items": items}).numpy()
    encoder.add_adapters(4)
    after, states_after = encoder({"items": items}).numpy(), encoder.sequence_output({"items": items}).numpy()
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(states_after, states_before)
    assert len(encoder.adapter_weights) == 4 * 2 * 2 and encoder.norm_weights
    assert UserEncoder.from_config(encoder.get_config()).adapter_bottleneck == 4
    for variable in encoder.adapter_weights:  # a trained adapter does change the output
        variable.assign(tf.random.stateless_normal(variable.shape, [1, 2]) * 0.5)
    assert np.abs(encoder({"items": items}).numpy() - before).max() > 1e-3


@pytest.mark.parametrize("objective,architecture,kwargs,steps", [
    ("mlm", "transformer", {"negatives": 0}, 80), ("autoregressive", "nextitnet", {"negatives": 4}, 40),
    ("autoregressive", "transformer", {"negatives": 0}, 40), ("contrastive", "transformer", {"negatives": 0}, 40),
    ("contrastive", "transformer", {"next_item_weight": 0.0}, 40)])
def test_pretraining_loss_falls(objective, architecture, kwargs, steps):
    # 60 users in three taste groups of four items: a user's clicks are random draws from their group,
    # so the context tells the group (masked, next and the other view's items) and the loss can fall.
    rng = np.random.default_rng(0)
    ids = np.asarray([[SPECIAL_ROWS + 4 * (u % 3) + int(rng.integers(0, 4)) for _ in range(9)] for u in range(60)],
                     np.int32)
    causal = objective == "autoregressive" or (objective == "contrastive" and kwargs.get("next_item_weight", 1.0) > 0)
    encoder = _encoder(architecture, **({"causal": True} if causal and architecture == "transformer" else {}))
    model = PretrainModel(encoder, objective, mask_rate=0.3, temperature=0.2, seed=0, **kwargs)
    model.build_variables({})
    optimizer = tf_keras.optimizers.Adam(1e-2)
    width = model.window

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = model.training_loss({"ids": x})
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients((g, v) for g, v in zip(grads, model.trainable_variables) if g is not None)
        return loss

    order = np.random.default_rng(0).permutation(len(ids))
    losses = [float(step(tf.constant(ids[np.roll(order, -30 * s)[:30], :width]))) for s in range(steps)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5]), np.round(losses, 3)


def test_run_folder_reload_and_export_parity(mlm_run, tmp_path):
    out, metrics = mlm_run
    for name in ("config.json", "spec.yaml", "vocabulary.json", "sequences.parquet", "history.json", "metrics.json",
                 "best", "encoder", "checkpoints"):
        assert (out / name).exists(), name
    rows = {row["model"]: row for row in metrics["tables"]["valid"]}
    assert set(rows) == {"mlm head (next item)", "user-vector kNN", "baseline: user kNN on item sets", "most popular"}
    assert set(metrics["tables"]) == {"valid"} and metrics["pooling"] == "mask"
    validation = metrics["protocols"]["valid"]
    assert validation["protocol"] == "leave_last_out" and validation["candidate_users"] == 48
    assert validation["queries"] + validation["skipped_repeat_targets"] == 48 and validation["queries"] > 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    # TensorBoard: every validation ranking metric is a curve; the early-stopping one is history's.
    curves = events(out / "tensorboard" / "validation")
    assert [v for _, v in curves["ndcg@10"]] == pytest.approx([h["valid_ndcg@10"] for h in history])
    assert {"hr@10", "hr@50", "ndcg@50"} <= set(curves)
    vocabulary = json.loads((out / "vocabulary.json").read_text())["items"]
    items = pd.read_csv(out / "tensorboard" / "embeddings" / "item_id.tsv", sep="\t", dtype={"id": str})
    assert items["id"].tolist() == vocabulary and items["line"].eq("a").all()
    # The vocabulary is most clicked first, so the counted clicks never rise down the table.
    assert items["training_clicks"].is_monotonic_decreasing and items["training_clicks"].iloc[0] > 1

    pretrained = load_pretrained(out)
    # max_length 8 stops at the longest training sequence (7: the last click of 8 validates).
    assert pretrained.config["max_length"] == 7 and pretrained.config["objective"] == "mlm"
    assert pretrained.item_vocabulary == sorted(ITEMS, key=lambda i: (pretrained.item_vocabulary.index(i)))
    # Without --valid the stored sequences hold every click, the held-out last one too.
    assert len(pretrained.sequences) == 48 and pretrained.sequences["u13"] == [f"i{(13 + 2 * k) % 12}" for k in range(8)]
    users = ["u1", "u5", "nobody"]
    vectors, has = pretrained.user_vectors(users)
    assert has.tolist() == [True, True, False] and not vectors[2].any() and np.abs(vectors[:2]).sum() > 0

    # The best epoch's full model (best/) holds the same encoder as encoder/.
    encoder = UserEncoder.from_config(pretrained.encoder.get_config())
    model = PretrainModel(encoder, "mlm", negatives=0)
    model.build_variables({})
    tf.train.Checkpoint(model=model).read(str(out / "best" / "weights")).assert_existing_objects_matched()
    np.testing.assert_allclose(encoder(pretrained.inputs(users[:2])).numpy(), vectors[:2], atol=1e-6)

    from mdrec.workflows.export import export_run

    version = export_run(out, "user_encoder", export_dir=tmp_path / "export", top_k=5)
    loaded = tf.saved_model.load(str(version))
    inputs = pretrained.inputs(users[:2])
    request = {"items": tf.constant(inputs["items"]), "times": tf.constant(inputs["times"])}
    got = loaded.signatures["serving_default"](**request)["user_embedding"].numpy()
    np.testing.assert_allclose(got, vectors[:2], atol=1e-5)
    # next_items: the head's top 5 without the request's own items, best first.
    served = loaded.signatures["next_items"](**request)
    ids, scores = served["item_ids"].numpy().astype(str), served["scores"].numpy()
    full = vectors[:2] @ pretrained.encoder.item_output_table().numpy().T + pretrained.encoder.item_bias.numpy()
    for row in range(2):
        seen = set(inputs["items"][row]) - {""}
        expected = [i for i in np.asarray(pretrained.item_vocabulary)[np.argsort(-full[row], kind="stable")]
                    if i not in seen][:5]
        expected += [""] * (5 - len(expected))  # fewer candidates than k: "" and -inf
        assert not seen & set(ids[row]) and list(ids[row]) == expected
        assert np.all(np.diff(scores[row]) <= 0) and np.isneginf(scores[row][ids[row] == ""]).all()
    assert (version / "assets" / "vocabulary.json").is_file()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_resume_after_interruption(data):
    out = data / "resume"
    kwargs = dict(objective="autoregressive", domains=["a"], dim=8, layers=1, max_length=8, epochs=2, batch_size=8,
                  negatives=4, checkpoint_every=2, log=lambda *_: None)

    def interrupt(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_run(data / "spec.yaml", data / "log.csv", out, on_batch=interrupt, **kwargs)
    assert not (out / "metrics.json").exists() and (out / "checkpoints").is_dir()
    messages = []
    metrics = pretrain_run(data / "spec.yaml", data / "log.csv", out, **{**kwargs, "log": messages.append})
    assert any(m.startswith("resuming from") and "step 4" in m for m in messages), messages
    assert metrics["epochs_run"] == 2
    with pytest.raises(MdrecError, match="different configuration"):
        pretrain_run(data / "spec.yaml", data / "log.csv", out, **{**kwargs, "dim": 16})


@pytest.mark.parametrize("args,expected", [
    (["--domains", "nope"], ["'nope'", "no such business line", "a, b", "--domains a"]),
    (["--domains", "b"], ["no clicks (label 1) in line(s) b", "check --domains"]),
    (["--attributes", "colour"], ["--attributes 'colour'", "category"]),
    (["--attributes", "city"], ["'city' is a user feature", "category"]),
    (["--architecture", "nextitnet"], ["nextitnet is causal", "--architecture transformer"]),
    (["--exclude-seen", "--negatives", "4"], ["--exclude-seen reshapes the full softmax", "4 sampled negatives",
                                               "--negatives 0"]),
])
def test_bad_input_gives_one_clear_error(data, capsys, args, expected):
    code = main(["pretrain", "--spec", str(data / "spec.yaml"), "--data", str(data / "log.csv"), "--objective", "mlm",
                 "--out", str(data / "bad"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mdrec: error:") and "\n" not in err and "Traceback" not in err, err
    for part in expected:
        assert part in err, err
    assert not (data / "bad").exists()


# ---- the ranking protocol ------------------------------------------------------------------------

def test_hr_and_ndcg_by_hand():
    ranks = np.array([0, 1, 9, 10, np.inf])  # 0 = the top; inf = a target outside the vocabulary
    got = ranking_metrics(ranks, ks=(10,))
    assert got["hr@10"] == pytest.approx(3 / 5)
    assert got["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def test_ranking_removes_the_history_and_breaks_ties_by_popularity():
    vocabulary = ["a", "b", "c", "d", "e"]  # most clicked first
    queries = Queries("test_log", ["u1", "u2", "u3"], [["a", "b"], ["c"], ["a"]], None, ["c", "e", "zz"], {})
    task = RankingTask.build(queries, vocabulary)
    scores = np.array([[9.0, 8.0, 1.0, 1.0, 0.0],   # a, b removed: c ties d and wins (more popular): rank 0
                       [0.0, 0.0, 5.0, 0.0, 0.0],   # c removed; a, b, d tie e and are more popular: rank 3
                       [0.0, 0.0, 0.0, 0.0, 0.0]])  # target outside the vocabulary: a miss
    np.testing.assert_array_equal(task.ranks(lambda rows: scores[rows]), [0, 3, np.inf])


def test_the_test_history_holds_the_validation_events():
    source = SourceData("train", ["a"], {"u1": ["i1", "i2"], "u2": ["i3"]}, None)
    valid = SourceData("valid", ["a"], {"u1": ["i4"], "u2": ["i5"]}, None)
    test = SourceData("test", ["a"], {"u1": ["i6"], "u2": ["i3"], "u3": ["i1"]}, None)
    held = held_out_queries(source, valid, test)
    assert held.train == source.sequences
    assert (held.valid.users, held.valid.histories, held.valid.targets) == (["u1", "u2"], [["i1", "i2"], ["i3"]],
                                                                             ["i4", "i5"])
    # Test: everything before it is history; u2's target was clicked before (skipped), u3 has no history.
    assert (held.test.users, held.test.histories, held.test.targets) == (["u1"], [["i1", "i2", "i4"]], ["i6"])
    assert held.test.counts == {"queries": 1, "skipped_repeat_targets": 1, "users_without_history": 1,
                                "candidate_users": 3}
    # Without --valid the last click validates, and the test history includes it.
    held = held_out_queries(source, None, test)
    assert held.train == {"u1": ["i1"], "u2": ["i3"]} and held.valid.targets == ["i2"]
    assert held.test.histories == [["i1", "i2"]]


def test_sequence_batches_cover_every_window_once_and_replay_on_resume():
    histories = [np.arange(2, 2 + n, dtype=np.int32) for n in (1, 3, 40, 7, 12, 5, 30, 2, 9, 4)]
    batches = SequenceBatches(histories, width=9, batch_size=3, seed=5, width_step=4)
    assert batches.batches_per_epoch == 4
    epoch = list(batches.epoch(0, 0))
    windows = [row for x, _ in epoch for row in x["ids"]]
    # Every user's last 9 items exactly once, right-padded; a batch is padded to its longest window only.
    got = sorted(tuple(int(v) for v in w if v) for w in windows)
    assert got == sorted(tuple(int(v) for v in h[-9:]) for h in histories)
    for x, _ in epoch:
        longest = int((x["ids"] != 0).sum(1).max())
        assert x["ids"].shape[1] == min(9, -(-longest // 4) * 4)
    # A resumed epoch skips exactly the batches already trained; another epoch is another order.
    resumed = list(batches.epoch(0, 2))
    for (a, _), (b, _) in zip(epoch[2:], resumed):
        np.testing.assert_array_equal(a["ids"], b["ids"])
    assert [x["ids"].tolist() for x, _ in batches.epoch(1, 0)] != [x["ids"].tolist() for x, _ in epoch]
    # Repeats add windows that end inside the history (at least two items in).
    repeated = SequenceBatches(histories, width=9, batch_size=3, seed=5, repeats=3)
    rows = [row for x, _ in repeated.epoch(0, 0) for row in x["ids"]]
    assert len(rows) == 30 and repeated.batches_per_epoch == 10
    ends = {int(r[r != 0][-1]) for r in rows if (r != 0).sum() >= 1}
    assert any(end < 2 + 40 - 1 and end > 2 + 12 for end in ends)  # a window of the 40-item user ending early


def _split_files(root, users=48, length=10, items=24):
    """User u clicks i(u), i(u + 1), ... (mod ``items``): no repeats, and each next item follows
    from the last one. Split leave-last-out into train / valid / test CSV files (one event each)."""
    rows = [(f"u{u}", f"i{(u + k) % items}", "a", 1, 1_000_000 + 3600 * (u * length + k), f"c{(u + k) % 3}", "x")
            for u in range(users) for k in range(length)]
    clicks = pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "click", "ts", "category", "city"])
    rank = clicks.groupby("user_id").cumcount(ascending=False)
    for name, part in (("train", clicks[rank >= 2]), ("valid", clicks[rank == 1]), ("test", clicks[rank == 0])):
        part.to_csv(root / f"{name}.csv", index=False)
    return root / "train.csv", root / "valid.csv", root / "test.csv"


def test_pretrain_reports_test_and_evaluate_reproduces_it(data, capsys, tmp_path):
    train, valid, test = _split_files(tmp_path)
    out = tmp_path / "ar"
    code = main(["pretrain", "--spec", str(data / "spec.yaml"), "--data", str(train), "--valid", str(valid),
                 "--test", str(test), "--objective", "autoregressive", "--domains", "a", "--dim", "16", "--layers",
                 "1", "--max-length", "8", "--epochs", "3", "--batch-size", "16", "--learning-rate", "0.01",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "test (test_log: 48 held-out items" in printed and "most popular" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    test_rows = {row["model"]: row for row in metrics["tables"]["test"]}
    assert set(test_rows) == {"autoregressive head (next item)", "user-vector kNN", "baseline: user kNN on item sets",
                              "most popular"}
    assert metrics["protocols"]["test"]["queries"] == 48 and metrics["causal"] and metrics["softmax"] == "full"
    # The next item follows from the last one: the head beats popularity.
    head = test_rows["autoregressive head (next item)"]
    assert head["ndcg@10"] > test_rows["most popular"]["ndcg@10"]
    # `mdrec evaluate --run` on the test log ranks after the stored sequences (train + valid): the same table.
    code = main(["evaluate", "--run", str(out), "--data", str(test), "--out", str(tmp_path / "eval.json")])
    assert code == 0 and "head (next item)" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    for row in result["table"]:
        for key in ("hr@10", "ndcg@10", "hr@50", "ndcg@50"):
            assert row[key] == pytest.approx(test_rows[row["model"]][key], abs=1e-6), (row["model"], key)


def test_a_run_written_before_a_setting_existed_resumes_while_the_setting_keeps_the_value_it_trained_with(
        data, tmp_path):
    log = tmp_path / "log.csv"
    sequence_log().to_csv(log, index=False)
    kwargs = dict(objective="autoregressive", domains=["a"], dim=8, layers=1, max_length=8, epochs=1, batch_size=16,
                  log=lambda *_: None)
    first = pretrain_run(data / "spec.yaml", log, tmp_path / "run", loss_weighting="batch", **kwargs)
    config_path = tmp_path / "run" / "config.json"
    stored = json.loads(config_path.read_text())
    del stored["config"]["hyperparameters"]["loss_weighting"]  # as an earlier version wrote it: batch weighting
    config_path.write_text(json.dumps(stored))
    again = pretrain_run(data / "spec.yaml", log, tmp_path / "run", loss_weighting="batch", **kwargs)
    assert again["best_epoch"] == first["best_epoch"] and again["epochs_run"] == first["epochs_run"]
    # Token weighting would continue that run under another loss: refused, naming the setting.
    with pytest.raises(MdrecError, match=r"\(changed: hyperparameters: loss_weighting 'batch' -> 'token'\)"):
        pretrain_run(data / "spec.yaml", log, tmp_path / "run", loss_weighting="token", **kwargs)


def test_token_weighting_gives_every_target_of_an_epoch_the_same_weight():
    # Windows of 3 and 10 items cut at width 5: 2 and 4 next-item targets, 3 in a batch of 2 on average.
    batches = SequenceBatches([np.arange(2, 5), np.arange(2, 12)], width=5, batch_size=2, seed=0)
    assert batches.mean_targets_per_batch(next_item=True) == pytest.approx(6.0)
    assert batches.mean_targets_per_batch(next_item=False, share=0.2) == pytest.approx(0.2 * (3 + 5) / 2 * 2)
    model = PretrainModel(_encoder(causal=True), "autoregressive", targets_per_batch=2.0)
    # Batch A: one target (loss 3); batch B: three (losses 1, 1, 1). Over the epoch, 6 / 4 targets.
    a = model.target_mean(tf.constant([3.0, 9.0]), tf.constant([1.0, 0.0])).numpy()
    b = model.target_mean(tf.constant([1.0, 1.0, 1.0]), tf.constant([1.0, 1.0, 1.0])).numpy()
    assert (a + b) / 2 == pytest.approx(6 / 4)
    batch_mean = PretrainModel(_encoder(causal=True), "autoregressive")  # the default: each batch's own mean
    assert batch_mean.target_mean(tf.constant([3.0, 9.0]), tf.constant([1.0, 0.0])).numpy() == pytest.approx(3.0)


def test_resume_refuses_changed_data(data, tmp_path):
    log = tmp_path / "log.csv"
    sequence_log().to_csv(log, index=False)
    kwargs = dict(objective="autoregressive", domains=["a"], dim=8, layers=1, max_length=8, epochs=1, batch_size=16,
                  log=lambda *_: None)
    pretrain_run(data / "spec.yaml", log, tmp_path / "run", **kwargs)
    sequence_log(seed=1).to_csv(log, index=False)  # same path, other clicks
    with pytest.raises(MdrecError, match="different configuration or inputs .*the train data"):
        pretrain_run(data / "spec.yaml", log, tmp_path / "run", **kwargs)


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from mdrec.pretraining.settings import DEFAULTS, TRAINING

    shown = {**{k: TRAINING[k] for k in ("batch_size", "learning_rate")},
             "epochs": "60; 100 for --objective mlm", "patience": "10; 20 for --objective mlm",
             **{k: DEFAULTS[k] for k in ("max_length", "dropout", "mask_rate", "dim", "heads", "schedule",
                                        "loss_weighting")}, "seed": 0}
    for key, default in shown.items():
        flag = "--" + key.replace("_", "-")
        # From the flag's own entry ("--flag METAVAR help...") to its "(default: X)", not past the next entry.
        entry = re.escape(flag) + r" [{},a-zA-Z_]+ (?:(?! --[a-z-]+ [{A-Z]).)*?"
        assert re.search(entry + r"\(default: " + re.escape(str(default)) + r"\)", text), flag


@pytest.mark.parametrize("kwargs", [{}, {"causal": True}])
def test_length_batched_vectors_equal_the_full_width_ones(kwargs):
    encoder = _encoder(**kwargs)  # bidirectional: [MASK] pooling; causal: the last state
    ids = _ids(rows=40, seed=4)
    full = encoder.vectors_of_ids(tf.constant(ids)).numpy()
    np.testing.assert_allclose(encoder_vectors(encoder, ids, batch_size=7, width_step=2), full, atol=1e-5)


def test_mlm_trains_longer_by_default_and_the_flags_still_decide():
    from mdrec.pretraining.settings import training_defaults

    assert {k: training_defaults("mlm")[k] for k in ("epochs", "patience")} == {"epochs": 100, "patience": 20}
    assert {k: training_defaults("autoregressive")[k] for k in ("epochs", "patience")} == {"epochs": 60,
                                                                                           "patience": 10}
    args = build_parser().parse_args(["pretrain", "--spec", "s", "--data", "d", "--out", "o", "--objective", "mlm"])
    assert (args.epochs, args.patience) == (None, None)   # left to pretrain_run, which reads the objective
    args = build_parser().parse_args(["pretrain", "--spec", "s", "--data", "d", "--out", "o", "--objective", "mlm",
                                      "--epochs", "7", "--patience", "3"])
    assert (args.epochs, args.patience) == (7, 3)


def test_exclude_seen_is_on_by_default_only_for_next_item_training_over_the_full_softmax():
    from mdrec.workflows.pretrain_hyperparameters import resolve_exclude_seen

    assert resolve_exclude_seen(None, "autoregressive", 0, 3416) is True        # SASRec's case: measured
    assert resolve_exclude_seen(None, "mlm", 0, 3416) is False                  # not measured there
    assert resolve_exclude_seen(None, "contrastive", 0, 3416) is False
    assert resolve_exclude_seen(None, "autoregressive", 2048, 80_000) is False  # sampled: nothing to reshape
    assert resolve_exclude_seen(False, "autoregressive", 0, 3416) is False      # --no-exclude-seen
    assert resolve_exclude_seen(True, "mlm", 0, 3416) is True
    with pytest.raises(MdrecError, match="reshapes the full softmax"):
        resolve_exclude_seen(True, "autoregressive", 2048, 80_000)
