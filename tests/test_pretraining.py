"""User-encoder pretraining: masking never leaks, causal encoders are causal, fresh adapters are the
identity, the losses fall on a learnable sequence set, runs resume, the encoder and its export
reload with the same outputs, and bad input gives one clear error."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from mdrec.cli import main
from mdrec.errors import MdrecError
from mdrec.models.user_encoder import SPECIAL_ROWS, UserEncoder
from mdrec.pretraining import objectives as obj
from mdrec.pretraining.train import PretrainModel, load_pretrained, pretrain_run

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
    inputs, targets, weights = (t.numpy() for t in obj.mlm_mask(ids, 0.3, tf.random.Generator.from_seed(3), mask_id))
    chosen = weights > 0
    assert chosen.any() and not chosen[ids == 0].any()                 # padding is never masked
    assert (inputs[chosen] == mask_id).all()                           # a masked input is [MASK] ...
    assert (inputs[chosen] != targets[chosen]).all()                   # ... never its target
    assert (inputs[~chosen] == ids[~chosen]).all() and (targets[~chosen] == 0).all()
    assert (targets[chosen] == ids[chosen]).all()
    assert chosen[(ids != 0).any(1)].any(1).all()                      # every non-empty row has a target
    # The masked position's attribute is the [MASK] row too: its category cannot leak.
    encoder = _encoder()
    assert int(encoder.attribute_ids("category", tf.constant([mask_id]))[0]) == len(ATTRIBUTES["category"]["vocabulary"]) + 2

    # Targets at unmasked positions are ignored by the loss.
    model = PretrainModel(encoder, "mlm", negatives=0, seed=0)
    model.build_variables({"items": np.array([["i1", "i2"] + [""] * 6])})
    states, _ = encoder.encode_ids(inputs)
    loss, _ = model._item_loss(states, tf.constant(targets), tf.constant(weights))
    scrambled = np.where(chosen, targets, np.random.default_rng(0).integers(0, mask_id, targets.shape)).astype(np.int32)
    loss_scrambled, _ = model._item_loss(states, tf.constant(scrambled), tf.constant(weights))
    assert float(loss) == pytest.approx(float(loss_scrambled), abs=1e-6)


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


@pytest.mark.parametrize("objective,architecture,negatives,steps", [
    ("mlm", "transformer", 0, 80), ("autoregressive", "nextitnet", 4, 40), ("contrastive", "transformer", 0, 40)])
def test_pretraining_loss_falls(objective, architecture, negatives, steps):
    # 60 users in three taste groups of four items: a user's clicks are random draws from their group,
    # so the context tells the group (masked, next and the other view's items) and the loss can fall.
    rng = np.random.default_rng(0)
    items = np.asarray([[f"i{4 * (u % 3) + int(rng.integers(0, 4))}" for _ in range(8)] for u in range(60)], object)
    encoder = _encoder(architecture)
    model = PretrainModel(encoder, objective, negatives=negatives, mask_rate=0.3, temperature=0.2, seed=0)
    model.build_variables({"items": items[:2]})
    optimizer = tf_keras.optimizers.Adam(1e-2)

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = model.training_loss({"items": x})
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    order = np.random.default_rng(0).permutation(len(items))
    losses = [float(step(tf.constant(items[np.roll(order, -30 * s)[:30]]))) for s in range(steps)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5]), np.round(losses, 3)


def test_run_folder_reload_and_export_parity(mlm_run, tmp_path):
    out, metrics = mlm_run
    for name in ("config.json", "spec.yaml", "vocabulary.json", "sequences.parquet", "history.json", "metrics.json",
                 "best", "encoder", "checkpoints"):
        assert (out / name).exists(), name
    rows = {row["model"]: row for row in metrics["tables"]["valid"]}
    assert set(rows) == {"mlm head (masked last item)", "user-vector kNN", "baseline: user kNN on item sets",
                         "popularity"}
    validation = metrics["validation"]
    assert validation["protocol"] == "leave_last_out" and validation["candidate_users"] == 48
    assert validation["queries"] + validation["skipped_repeat_targets"] == 48 and validation["queries"] > 0
    assert len(json.loads((out / "history.json").read_text())) == 2

    pretrained = load_pretrained(out)
    assert pretrained.config["max_length"] == 8 and pretrained.config["objective"] == "mlm"
    assert pretrained.item_vocabulary == sorted(ITEMS, key=lambda i: (pretrained.item_vocabulary.index(i)))
    assert len(pretrained.sequences) == 48 and pretrained.sequences["u13"] == [f"i{(13 + 2 * k) % 12}" for k in range(8)]
    users = ["u1", "u5", "nobody"]
    vectors, has = pretrained.user_vectors(users)
    assert has.tolist() == [True, True, False] and not vectors[2].any() and np.abs(vectors[:2]).sum() > 0

    # The best epoch's full model (best/) holds the same encoder as encoder/.
    encoder = UserEncoder.from_config(pretrained.encoder.get_config())
    model = PretrainModel(encoder, "mlm", negatives=0)
    model.build_variables(pretrained.inputs(users[:2]))
    tf.train.Checkpoint(model=model).read(str(out / "best" / "weights")).assert_existing_objects_matched()
    np.testing.assert_allclose(encoder(pretrained.inputs(users[:2])).numpy(), vectors[:2], atol=1e-6)

    from mdrec.export import export_run

    version = export_run(out, "user_encoder", export_dir=tmp_path / "export")
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    inputs = pretrained.inputs(users[:2])
    got = served(items=tf.constant(inputs["items"]), times=tf.constant(inputs["times"]))["user_embedding"].numpy()
    np.testing.assert_allclose(got, vectors[:2], atol=1e-5)
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
])
def test_bad_input_gives_one_clear_error(data, capsys, args, expected):
    code = main(["pretrain", "--spec", str(data / "spec.yaml"), "--data", str(data / "log.csv"), "--objective", "mlm",
                 "--out", str(data / "bad"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mdrec: error:") and "\n" not in err and "Traceback" not in err, err
    for part in expected:
        assert part in err, err
    assert not (data / "bad").exists()
