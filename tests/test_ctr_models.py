"""STAR's layers do the paper's math; every CTR model trains and round-trips through SavedModel."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mdrec.data.pipeline import domain_batch_dataset
from mdrec.errors import MdrecError
from mdrec.layers.domain import DomainDense, PartitionedNormalization, StarDense, fused_inference
from mdrec.layers.star import StarTower
from mdrec.training.run import TrainConfig
from mdrec.workflows.train import train_run
from conftest import reload_and_serve


def test_partitioned_norm_uses_each_domains_statistics_at_inference():
    rng = np.random.default_rng(0)
    layer = PartitionedNormalization(2, momentum=0.0)   # moving stats = the last batch's stats
    x = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(10, 3, (200, 3))]).astype(np.float32)
    domain = np.array([0] * 200 + [1] * 200, dtype=np.int32)
    layer(x, domain, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy()[1], x[200:].mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy()[1], x[200:].var(0), rtol=1e-4)
    out = layer(x, domain, training=False).numpy()
    # Each domain is standardised with its own statistics (a shared BN would leave domain 1 near +1.5).
    for d, rows in ((0, slice(0, 200)), (1, slice(200, 400))):
        assert np.abs(out[rows].mean(0)).max() < 1e-3
        np.testing.assert_allclose(out[rows].std(0), 1.0, atol=1e-2)
    # The domain scale and shift apply on top of the global ones: (γ·γ_p) z + (β + β_p).
    layer.domain_gamma.assign([[1, 1, 1], [2, 2, 2]])
    layer.domain_beta.assign([[0, 0, 0], [5, 5, 5]])
    out2 = layer(x, domain, training=False).numpy()
    np.testing.assert_allclose(out2[200:], 2 * out[200:] + 5, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out2[:200], out[:200], rtol=1e-6)


def test_absent_domain_keeps_its_statistics():
    layer = PartitionedNormalization(3, momentum=0.5)
    x = np.random.default_rng(1).normal(2, 1, (64, 4)).astype(np.float32)
    layer(x, np.zeros(64, np.int32), training=True)
    before = layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()
    out = layer(x, np.zeros(64, np.int32), training=True).numpy()          # domains 1, 2 absent again
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(layer.moving_mean.numpy()[1:], before[0][1:])
    np.testing.assert_array_equal(layer.moving_variance.numpy()[1:], before[1][1:])
    np.testing.assert_array_equal(layer.moving_mean.numpy()[1:], 0.0)
    assert not np.array_equal(layer.moving_mean.numpy()[0], before[0][0])   # the present one moved
    single = layer(x[:1], np.array([2], np.int32), training=True).numpy()   # a one-example partition
    assert np.isfinite(single).all() and np.isfinite(layer.moving_variance.numpy()).all()


def test_star_dense_matches_per_domain_reference():
    rng = np.random.default_rng(2)
    layer = StarDense(5, num_domains=3, activation=None)
    x = rng.normal(size=(40, 7)).astype(np.float32)
    domain = rng.integers(0, 3, 40).astype(np.int32)
    layer(x, domain, training=True)
    layer.domain_kernel.assign(rng.normal(size=(3, 7, 5)).astype(np.float32))
    layer.domain_bias.assign(rng.normal(size=(3, 5)).astype(np.float32))
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    wp, bp = layer.domain_kernel.numpy(), layer.domain_bias.numpy()
    expected = np.stack([x[i] @ (w * wp[domain[i]]) + b + bp[domain[i]] for i in range(40)])
    np.testing.assert_allclose(layer(x, domain, training=True).numpy(), expected, rtol=1e-5, atol=1e-5)
    # Inference before any fuse() computes W ⊙ W_p itself (the fused weights are still zeros).
    np.testing.assert_allclose(layer(x, domain, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    layer.fuse()                                                    # serving path: precomputed W*_p
    layer.kernel.assign(2 * w)
    doubled = np.stack([x[i] @ (2 * w * wp[domain[i]]) + b + bp[domain[i]] for i in range(40)])
    # Called directly, the layer always computes W ⊙ W_p (the fused copy is stale now) ...
    np.testing.assert_allclose(layer(x, domain, training=False).numpy(), doubled, rtol=1e-5, atol=1e-5)
    # ... and an export traces under fused_inference: the fused weights, read with no check (they
    # were fused just before and cannot change), so here they still give the pre-doubling scores.
    with fused_inference():
        np.testing.assert_allclose(layer(x, domain, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    layer.kernel.assign(w)
    # Domain weights learn only from their own domain; shared weights from every example.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x[domain == 0], domain[domain == 0], training=True))
    grads = dict(zip(["kernel", "bias", "domain_kernel", "domain_bias"],
                     tape.gradient(loss, [layer.kernel, layer.bias, layer.domain_kernel, layer.domain_bias])))
    assert np.abs(grads["domain_kernel"].numpy()[0]).sum() > 0
    assert np.abs(grads["domain_kernel"].numpy()[1:]).sum() == 0
    assert np.abs(grads["kernel"].numpy()).sum() > 0


def _star_tower_by_hand(tower: StarTower, x: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Row by row in numpy: each row through its domain's W ⊙ W_p, ReLU between the layers."""
    layers = tower.star + [tower.star_out]
    rows = []
    for i in range(len(x)):
        h, d = x[i], domain[i]
        for j, layer in enumerate(layers):
            h = h @ (layer.kernel.numpy() * layer.domain_kernel.numpy()[d]) + layer.bias.numpy() \
                + layer.domain_bias.numpy()[d]
            h = np.maximum(h, 0) if j < len(layers) - 1 else h
        rows.append(h)
    return np.stack(rows)


def test_star_tower_routes_each_row_through_its_domains_stack():
    rng = np.random.default_rng(5)
    tower = StarTower([6, 4], num_domains=3, units=2)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    domain = np.array([0, 2] * 15, np.int32)                       # domain 1 absent
    tower(x, domain, training=True)
    for layer in tower.star + [tower.star_out]:                    # domains that differ from the start
        layer.domain_kernel.assign(rng.normal(1, 0.5, layer.domain_kernel.shape).astype(np.float32))
        layer.domain_bias.assign(rng.normal(0, 0.5, layer.domain_bias.shape).astype(np.float32))
    expected = _star_tower_by_hand(tower, x, domain)
    np.testing.assert_allclose(tower(x, domain, training=True).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tower(x, domain, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    one = np.full(30, 2, np.int32)  # one domain: partitioned in training, the direct path at inference
    expected_one = _star_tower_by_hand(tower, x, one)
    np.testing.assert_allclose(tower(x, one, training=True).numpy(), expected_one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tower(x, one, training=False).numpy(), expected_one, rtol=1e-5, atol=1e-5)
    assert tower(x[:0], domain[:0], training=False).shape == (0, 2)
    # Served fused while fresh; a training call makes the fused weights stale, and inference goes
    # back to W ⊙ W_p until the next fuse(); an export (fused_inference) reads them unchecked.
    tower.fuse()
    assert bool(tower.is_fused.numpy())
    np.testing.assert_allclose(tower(x, domain, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    tower(x, domain, training=True)
    assert not bool(tower.is_fused.numpy())
    first = tower.star[0]
    first.kernel.assign(2 * first.kernel)
    changed = _star_tower_by_hand(tower, x, domain)
    assert np.abs(changed - expected).max() > 1e-2
    np.testing.assert_allclose(tower(x, domain, training=False).numpy(), changed, rtol=1e-5, atol=1e-5)
    with fused_inference():
        np.testing.assert_allclose(tower(x, domain, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    # Domain weights learn only from their own domain's rows.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tower(x, domain, training=True))
    grad = tf.convert_to_tensor(tape.gradient(loss, first.domain_kernel)).numpy()
    assert np.abs(grad[[0, 2]]).sum() > 0 and np.abs(grad[1]).sum() == 0
    clone = StarTower.from_config(tower.get_config())
    assert (clone.hidden, clone.num_domains, clone.units) == ((6, 4), 3, 2)


def test_star_tower_normalizes_each_domain_by_its_own_rows():
    # With PN, routing once must equal PN over the whole mixed batch by domain (one layer here).
    rng = np.random.default_rng(6)
    tower = StarTower([4], num_domains=2, normalization=True, pn_momentum=0.5)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    domain = rng.integers(0, 2, 20).astype(np.int32)
    out = tower(x, domain, training=True).numpy()
    star, out_layer, pn = tower.star[0], tower.star_out, tower.norms[0]
    z = np.stack([x[i] @ (star.kernel.numpy() * star.domain_kernel.numpy()[d]) + star.bias.numpy()
                  for i, d in enumerate(domain)])
    normed = np.empty_like(z)
    for d in (0, 1):
        rows = domain == d
        normed[rows] = (z[rows] - z[rows].mean(0)) / np.sqrt(z[rows].var(0) + pn.epsilon)
        np.testing.assert_allclose(pn.moving_mean.numpy()[d], 0.5 * z[rows].mean(0), rtol=1e-4, atol=1e-5)
    expected = np.maximum(normed, 0) @ out_layer.kernel.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_star_dense_mixed_batch_gradients_by_hand():
    # Loss = the sum of the outputs of a mixed batch (domains 0, 2, 0; domain 1 absent), W = [1, 2]^T,
    # every W_p = 1. d/dW_p = W ⊙ (sum of x over p's rows); d/dW = Σ_p W_p ⊙ (the same sums).
    layer = StarDense(1, num_domains=3, activation=None)
    x = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    domain = np.array([0, 2, 0], np.int32)
    layer(x, domain, training=True)
    layer.kernel.assign([[1.0], [2.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, domain, training=True))
    kernel, bias, domain_kernel, domain_bias = tape.gradient(
        loss, [layer.kernel, layer.bias, layer.domain_kernel, layer.domain_bias])
    np.testing.assert_allclose(tf.convert_to_tensor(domain_kernel).numpy()[..., 0], [[2, 2], [0, 0], [0, 2]])
    np.testing.assert_allclose(tf.convert_to_tensor(kernel).numpy()[:, 0], [2, 2])
    np.testing.assert_allclose(tf.convert_to_tensor(domain_bias).numpy()[:, 0], [2, 0, 1])
    np.testing.assert_allclose(bias.numpy(), [3])
    # DomainDense: each domain's kernel gets only its own rows' sum of x.
    per_line = DomainDense(1, num_domains=3, activation=None)
    per_line(x, domain)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(per_line(x, domain))
    np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(loss, per_line.kernel)).numpy()[..., 0],
                               [[2, 1], [0, 0], [0, 1]])


def test_domain_batches_each_hold_one_domain():
    domains = np.array(list("aaaaaaabbbc"), dtype=object)
    inputs = {"row": np.arange(11, dtype=np.int64)}
    batches = list(domain_batch_dataset(inputs, np.zeros(11, np.float32), domains, 3, seed=0))
    rows = [b[0]["row"].numpy() for b in batches]
    assert sorted(np.concatenate(rows).tolist()) == list(range(11))
    assert all(len(set(domains[r])) == 1 for r in rows)
    resumed = list(domain_batch_dataset(inputs, np.zeros(11, np.float32), domains, 3, seed=0, skip_batches=2))
    assert [b[0]["row"].numpy().tolist() for b in resumed] == [r.tolist() for r in rows[2:]]


@pytest.mark.parametrize("model, extra", [("star", {}), ("star", {"normalization": "input"}),
                                          ("star", {"normalization": "hidden"}),
                                          ("shared_bottom", {}), ("separate", {}), ("mmoe", {"num_experts": 2})])
def test_models_train_and_round_trip_savedmodel(tmp_path, tiny_spec_path, tiny_splits, model, extra):
    config = TrainConfig(model=model, train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                         epochs=3, batch_size=32, learning_rate=5e-3, patience=5,
                         domain_batches=(model == "star"),
                         hyperparameters={"hidden": [16, 8], "dropout": 0.0, **extra})
    metrics = train_run(tiny_spec_path, config, tmp_path / model, log=lambda *_: None)
    history = pd.read_json(tmp_path / model / "history.json")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]      # it learns

    _, expected, _, outputs = reload_and_serve(tmp_path / model, tiny_splits["test"], tmp_path)
    got = outputs["probability"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert metrics["tables"]["valid"][-1]["rows"] == 90
    if model == "star":
        _a_step_of_your_own_loop_is_served_fresh(tmp_path / model, tiny_splits["test"])
    # The projector shows every ID table the model reads: one per line for separate's towers.
    shown = sorted(p.stem for p in (tmp_path / model / "tensorboard" / "embeddings").glob("*.tsv"))
    lines = ["a", "b", "c"]
    assert shown == (sorted(f"{t}@{d}" for t in ("item_id", "user_id") for d in lines) if model == "separate"
                     else ["item_id", "user_id"])


def _a_step_of_your_own_loop_is_served_fresh(run, test):
    """STAR trained further by a plain GradientTape loop, then called directly: the scores are those
    of the new weights (they once came from the fused weights of the kit's last fuse())."""
    from mdrec.workflows.restore import restore_for

    restored = restore_for(run, test)
    model = restored.model
    batch = {k: tf.constant(v[:64]) for k, v in restored.inputs.items()}
    before = model(batch, training=False).numpy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
        if grad is not None:
            variable.assign_sub(0.5 * tf.convert_to_tensor(grad))    # a plain SGD step
    direct = model(batch, training=False).numpy()
    assert np.abs(direct - before).max() > 1e-3                    # the step changed the scores
    model.prepare_inference()
    np.testing.assert_allclose(direct, model(batch, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_model_parameter_is_a_clear_error(tmp_path, tiny_spec_path, tiny_splits):
    config = TrainConfig(model="star", train=str(tiny_splits["train"]), epochs=1,
                         hyperparameters={"normalization": "sideways"})
    with pytest.raises(MdrecError, match="normalization must be"):
        train_run(tiny_spec_path, config, tmp_path / "bad", log=lambda *_: None)
    config = TrainConfig(model="mmoe", train=str(tiny_splits["train"]), epochs=1, hyperparameters={"expertz": 3})
    with pytest.raises(MdrecError, match="does not take expertz"):
        train_run(tiny_spec_path, config, tmp_path / "bad2", log=lambda *_: None)
    assert not (tmp_path / "bad" / "config.json").exists()     # nothing half-made to trip a rerun
