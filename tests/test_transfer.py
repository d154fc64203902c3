"""Transfer of a pretrained user encoder into a target line's models."""
from __future__ import annotations

import numpy as np
import pytest

import mdrec  # noqa: F401
import tensorflow as tf

from conftest import TINY_SPEC, write_tiny_splits
from mdrec.cli import main as cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny log, its spec and an encoder pretrained (mlm, 1 epoch) on its training split."""
    folder = tmp_path_factory.mktemp("transfer")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    paths = write_tiny_splits(folder)
    pretrained = folder / "pretrained"
    code = cli(["pretrain", "--spec", str(spec), "--data", str(paths["train"]), "--objective", "mlm",
                "--dim", "8", "--layers", "1", "--heads", "1", "--max-length", "5", "--epochs", "1",
                "--batch-size", "16", "--out", str(pretrained)])
    assert code == 0
    return {"spec": spec, "paths": paths, "pretrained": pretrained, "folder": folder}


def _model(setup, mode: str):
    from mdrec.data.log import load_log
    from mdrec.data.pipeline import labels_of, model_inputs
    from mdrec.data.transform import Transform
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec
    from mdrec.training.inference import build
    from mdrec.transfer.user_feature import PretrainedUser
    from mdrec.workflows.pretrained import load_pretrained

    spec = load_spec(setup["spec"])
    log = load_log(setup["paths"]["train"], spec)
    transform = Transform.fit(log, spec)
    user = PretrainedUser(load_pretrained(setup["pretrained"]), mode, adapter_dim=4, name="pretrained_user")
    model = build_model("shared_bottom", spec, transform, hidden=[8], user_feature=user)
    inputs = model_inputs(log, spec)
    build(model, inputs)
    return model, inputs, labels_of(log)


def _train_steps(model, inputs, labels, steps: int = 8):
    import tf_keras

    optimizer = tf_keras.optimizers.Adam(0.05)
    batch = {k: tf.constant(v[:64]) for k, v in inputs.items()}
    y = tf.constant(labels[:64])
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.training_loss(batch, y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))


def _snapshot(variables):
    return {id(v): (v.name, v.numpy().copy()) for v in variables}


def test_adapter_mode_changes_only_adapters_norms_and_head(setup):
    model, inputs, labels = _model(setup, "adapter")
    encoder = model.encoder.user_feature.encoder
    patched = {id(v) for v in encoder.adapter_weights + encoder.norm_weights}
    assert encoder.adapter_weights, "adapter mode adds adapters"
    before = _snapshot(encoder.weights)
    head_before = _snapshot(model.mlp.weights)
    _train_steps(model, inputs, labels)
    changed = {key for key, (_, value) in before.items()
               if not np.array_equal(value, next(v for v in encoder.weights if id(v) == key).numpy())}
    assert changed, "the adapters should learn"
    frozen_changed = [before[k][0] for k in changed if k not in patched]
    assert not frozen_changed, f"pretrained weights moved in adapter mode: {frozen_changed}"
    assert any(not np.array_equal(value, v.numpy()) for v in model.mlp.weights for k, (_, value) in head_before.items()
               if id(v) == k)
    from mdrec.transfer.user_feature import trainable_share

    share = trainable_share(encoder)["encoder_trainable_share"]
    assert 0 < share < 0.5


def test_frozen_keeps_the_encoder_and_finetune_moves_it(setup):
    for mode, should_move in (("frozen", False), ("finetune", True)):
        model, inputs, labels = _model(setup, mode)
        encoder = model.encoder.user_feature.encoder
        before = [v.numpy().copy() for v in encoder.weights]
        _train_steps(model, inputs, labels)
        moved = any(not np.array_equal(b, v.numpy()) for b, v in zip(before, encoder.weights))
        assert moved == should_move, mode


def test_scratch_starts_from_fresh_weights_of_the_same_shape(setup):
    pretrained, _, _ = _model(setup, "finetune")
    scratch, _, _ = _model(setup, "scratch")
    a = pretrained.encoder.user_feature.encoder.weights
    b = scratch.encoder.user_feature.encoder.weights
    assert [v.shape for v in a] == [v.shape for v in b]
    assert any(not np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))


def test_a_user_the_source_never_saw_falls_back_to_zeros_and_a_flag(setup):
    model, inputs, _ = _model(setup, "finetune")
    layer = model.encoder.user_feature
    known = sorted(layer.users)[0]
    out = layer(tf.constant([known, "never-seen-user"])).numpy()
    assert out.shape == (2, layer.width)
    assert out[0, -1] == 1.0 and np.abs(out[0, :-1]).sum() > 0
    assert out[1, -1] == 0.0 and np.all(out[1, :-1] == 0.0)
    history = layer.source_history(tf.constant(["never-seen-user"])).numpy()
    assert (history == b"").all()


def test_frozen_reads_each_users_vector_from_a_table_equal_to_the_encoder_at_full_width(setup):
    model, _, _ = _model(setup, "frozen")
    layer = model.encoder.user_feature
    users = sorted(layer.users)
    ids = tf.constant(users + ["never-seen-user"])
    calls = []  # the encoder no longer runs per batch
    call = layer.encoder.call
    layer.encoder.call = lambda x, **kw: calls.append(1) or call(x, **kw)
    try:
        out = layer(ids, training=True).numpy()
    finally:
        del layer.encoder.call
    assert calls == []
    full = layer.encoder({"items": layer.source_history(tf.constant(users))}, training=False).numpy()
    np.testing.assert_allclose(out[:-1, :-1], full, rtol=1e-5, atol=1e-6)
    assert (out[:-1, -1] == 1.0).all() and out[-1, -1] == 0.0 and np.all(out[-1, :-1] == 0.0)


@pytest.mark.parametrize("mode", ["finetune", "adapter"])
def test_short_histories_are_encoded_at_the_short_width_with_the_full_width_vectors(setup, mode):
    from mdrec.transfer.user_feature import PretrainedUser
    from mdrec.workflows.pretrained import load_pretrained

    grouped = PretrainedUser(load_pretrained(setup["pretrained"]), mode, adapter_dim=4, short_width=3)
    full = PretrainedUser(load_pretrained(setup["pretrained"]), mode, adapter_dim=4, short_width=0)
    users = sorted(grouped.users)
    lengths = grouped.lengths.numpy()[1:]
    assert (lengths < 3).any() and (lengths >= 3).any()  # both groups are exercised
    ids = tf.constant(users + ["never-seen-user"])
    widths = []  # two encoder calls: the short histories at width 3, the rest at max_length (5)
    call = grouped.encoder.call
    grouped.encoder.call = lambda x, **kw: widths.append(int(x["items"].shape[1])) or call(x, **kw)
    try:
        out = grouped(ids).numpy()
    finally:
        del grouped.encoder.call
    assert widths == [3, 5]
    full(ids)  # builds its adapters
    full.encoder.set_weights(grouped.encoder.get_weights())
    np.testing.assert_allclose(out, full(ids).numpy(), rtol=1e-5, atol=1e-6)
    grads = []  # the same gradients through the two groups as through one call (dropout off)
    for layer in (grouped, full):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids) ** 2)
        grads.append([None if g is None else tf.convert_to_tensor(g).numpy()
                      for g in tape.gradient(loss, layer.encoder.trainable_variables)])
    assert sum(g is not None for g in grads[0]) > 3
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            # float32 sums in another order: entries that nearly cancel differ by up to ~1e-5 of the
            # variable's largest gradient (6e-6 measured), so the floor scales with that.
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_each_distinct_user_is_encoded_once_with_the_per_row_result(setup):
    model, inputs, _ = _model(setup, "finetune")
    layer = model.encoder.user_feature
    a, b = sorted(layer.users)[:2]
    ids = tf.constant([a, b, a, "never-seen-user", a, "unknown-too", b])
    out = layer(ids).numpy()
    per_row = np.stack([layer(tf.constant([user])).numpy()[0] for user in ids.numpy()])
    np.testing.assert_allclose(out, per_row, rtol=1e-5, atol=1e-6)
    encoded = []  # the encoder sees one row per distinct user (the two unknown users share one)
    call = layer.encoder.call
    layer.encoder.call = lambda x, **kw: encoded.append(int(x["items"].shape[0])) or call(x, **kw)
    try:
        layer(ids)
    finally:
        del layer.encoder.call
    assert encoded == [3]


def test_transfer_ctr_run_reports_slices_and_reloads_and_serves_identically(setup, tmp_path):
    from conftest import reload_and_serve
    from mdrec.workflows.transfer import transfer_run

    paths = setup["paths"]
    result = transfer_run(setup["pretrained"], setup["spec"], tmp_path / "run", task="ctr", mode="adapter",
                           train=str(paths["train"]), valid=str(paths["valid"]), test=str(paths["test"]),
                           epochs=2, batch_size=64, hyperparameters={"hidden": [8]}, log=lambda *_: None)
    metrics, slices = result.metrics, result.table
    assert {"ALL", "with source history"} <= set(slices.index)
    assert any(str(i).startswith("target history") for i in slices.index)
    model_all = slices[slices["model"] == "model"].loc["ALL", "auc"]
    assert model_all == pytest.approx(metrics["tables"]["test"][-1]["auc"])
    assert metrics["transfer"]["mode"] == "adapter" and 0 < metrics["transfer"]["encoder_trainable_share"] < 1
    inputs, expected, _, served = reload_and_serve(tmp_path / "run", paths["test"], tmp_path)
    np.testing.assert_allclose(served["probability"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_profile_task_reports_model_and_majority_rows(setup, tmp_path):
    from mdrec.workflows.transfer import transfer_run

    result = transfer_run(setup["pretrained"], setup["spec"], tmp_path / "profile", task="profile",
                           mode="frozen", train=str(setup["paths"]["train"]), target="city", epochs=2,
                           batch_size=16, log=lambda *_: None)
    metrics, table = result.metrics, result.table
    assert set(table["model"]) == {"model", "majority class"}
    assert sum(metrics["users"].values()) == 40  # every user of the log, split 80/10/10
    assert metrics["users"]["test"] == 4
    assert metrics["transfer"]["encoder_trainable"] == 0  # frozen


@pytest.mark.parametrize("args, message", [
    (["--task", "profile", "--mode", "frozen"], "--task profile needs --target"),
    (["--task", "ctr", "--mode", "frozen", "--model", "two_tower"], "is a retrieval model and --task is ctr"),
    (["--task", "profile", "--mode", "frozen", "--target", "price"], "'price' is not a user attribute (its role is item)"),
    (["--task", "retrieval", "--mode", "frozen", "--param", "towers=shared"], "towers=shared reads no user input"),
])
def test_transfer_cli_errors_are_one_line(setup, tmp_path, capsys, args, message):
    code = cli(["transfer", "--from", str(setup["pretrained"]), "--spec", str(setup["spec"]),
                "--train", str(setup["paths"]["train"]), "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
