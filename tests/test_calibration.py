"""Per-line calibration: the layer's math, the Platt fit recovering a known miscalibration, fitting
twice changing nothing, thin lines left alone, and a CTR model serving calibrated scores."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mdrec.layers.calibration import LineCalibration
from mdrec.training.calibration import fit_line_calibration, logits_of


def test_layer_scales_and_shifts_each_line():
    layer = LineCalibration(2)
    logits, lines = tf.constant([1.0, 1.0, -2.0]), tf.constant([0, 1, 1])
    np.testing.assert_allclose(layer(logits, lines).numpy(), [1.0, 1.0, -2.0])   # identity until fitted
    layer.assign([2.0, 0.5], [0.0, -1.0])
    np.testing.assert_allclose(layer(logits, lines).numpy(), [2.0, -0.5, -2.0])
    with pytest.raises(ValueError, match="expected 2 values, one per line"):
        layer.assign([1.0], [0.0])
    assert LineCalibration.from_config(layer.get_config()).num_lines == 2
    # With user groups: line d of group g reads pair d + 2 g; without groups, group 0.
    grouped = LineCalibration(2, user_groups=2)
    grouped.assign([2.0, 0.5, 1.0, 3.0], [0.0, -1.0, 0.5, 0.0])
    np.testing.assert_allclose(grouped(logits, lines, tf.constant([0, 0, 1])).numpy(), [2.0, -0.5, -6.0])
    np.testing.assert_allclose(grouped(logits, lines).numpy(), [2.0, -0.5, -2.0])
    with pytest.raises(ValueError, match="expected 4 values, one per line and user group"):
        grouped.assign([1.0, 1.0], [0.0, 0.0])
    assert LineCalibration.from_config(grouped.get_config()).user_groups == 2


def _miscalibrated(rng, n: int, a: float, b: float):
    """Raw logits z and labels drawn from the true p = σ(a z + b)."""
    z = rng.normal(size=n) * 1.5
    labels = (rng.random(n) < 1 / (1 + np.exp(-(a * z + b)))).astype(int)
    return z, labels


def test_platt_fit_recovers_each_lines_miscalibration_and_is_idempotent():
    rng = np.random.default_rng(0)
    z0, y0 = _miscalibrated(rng, 20_000, 0.5, -1.0)     # line 0: too confident and too high
    z1, y1 = _miscalibrated(rng, 20_000, 2.0, 0.5)      # line 1: too timid and too low
    z, y = np.concatenate([z0, z1]), np.concatenate([y0, y1])
    lines = np.repeat([0, 1], 20_000)
    layer = LineCalibration(2)
    fits = fit_line_calibration(layer, 1 / (1 + np.exp(-z)), y, lines, ["a", "b"])
    np.testing.assert_allclose([fits["a"].scale, fits["a"].shift], [0.5, -1.0], atol=0.08)
    np.testing.assert_allclose([fits["b"].scale, fits["b"].shift], [2.0, 0.5], atol=0.12)
    calibrated = layer(tf.constant(z, tf.float32), tf.constant(lines)).numpy()
    again = fit_line_calibration(layer, 1 / (1 + np.exp(-calibrated)), y, lines, ["a", "b"])
    for line in ("a", "b"):  # the second fit finds nothing left to correct
        assert again[line].scale == pytest.approx(fits[line].scale, rel=1e-3)
        assert again[line].shift == pytest.approx(fits[line].shift, abs=1e-3)


def test_a_thin_or_one_class_line_keeps_its_pair_and_says_why():
    rng = np.random.default_rng(1)
    z, y = _miscalibrated(rng, 1_000, 0.5, 0.0)
    lines = np.zeros(1_000, dtype=int)
    lines[:50] = 1                   # 50 rows: too few
    lines[50:60] = 2
    y[50:60] = 1                     # 10 rows of one class
    layer = LineCalibration(3)
    fits = fit_line_calibration(layer, 1 / (1 + np.exp(-z)), y, lines, ["big", "thin", "one"])
    assert fits["big"].kept is None and fits["big"].scale != 1.0
    assert fits["thin"].kept == "50 held-out rows, fewer than 200" and fits["thin"].scale == 1.0
    assert "10 held-out rows" in fits["one"].kept
    assert fits["thin"].report() == {"scale": 1.0, "shift": 0.0, "rows": 50, "kept": fits["thin"].kept}
    assert fits["thin"].note() == "50 held-out rows, fewer than 200: left as it was"


def test_each_user_group_gets_its_lines_slope_and_its_own_shift():
    rng = np.random.default_rng(2)
    z_known, y_known = _miscalibrated(rng, 20_000, 1.0, 0.8)    # known users: 0.8 higher than predicted
    z_new, y_new = _miscalibrated(rng, 20_000, 1.0, -0.8)       # new users: 0.8 lower
    z_thin, y_thin = _miscalibrated(rng, 2_000, 0.5, 0.0)
    z = np.concatenate([z_known, z_new, z_thin, z_thin[:100]])
    y = np.concatenate([y_known, y_new, y_thin, y_thin[:100]])
    lines = np.repeat([0, 0, 1, 1], [20_000, 20_000, 2_000, 100])
    groups = np.repeat([0, 1, 0, 1], [20_000, 20_000, 2_000, 100])
    layer = LineCalibration(2, user_groups=2)
    fits = fit_line_calibration(layer, 1 / (1 + np.exp(-z)), y, lines, ["a", "b"], groups)
    known, new = fits["a"], fits["a, new users"]
    assert known.scale == new.scale                              # one slope per line
    assert known.shift - new.shift == pytest.approx(1.6, abs=0.15) and known.kept is None and new.rows == 20_000
    # Each group's mean prediction is its click rate on the rows it was fitted on.
    p = 1 / (1 + np.exp(-(known.scale * z[:40_000] + np.where(groups[:40_000] == 0, known.shift, new.shift))))
    assert p[:20_000].mean() == pytest.approx(y_known.mean(), abs=1e-6)
    assert p[20_000:].mean() == pytest.approx(y_new.mean(), abs=1e-6)
    # Line b's new users: 100 rows, too few for a shift of their own; they keep the line's pair.
    assert fits["b, new users"].note() == "100 held-out rows, fewer than 200: its line's pair, no shift of its own"
    assert fits["b, new users"].report()["pooled"] is True and "pooled" not in fits["b"].report()
    assert (fits["b, new users"].scale, fits["b, new users"].shift) != (1.0, 0.0)
    np.testing.assert_allclose(layer.scale.numpy(), [fits[k].scale for k in ("a", "b", "a, new users", "b, new users")],
                               rtol=1e-6)


def test_logits_of_inverts_the_sigmoid_and_stays_finite():
    z = np.array([-3.0, 0.0, 2.5])
    np.testing.assert_allclose(logits_of(1 / (1 + np.exp(-z))), z, atol=1e-9)
    assert np.isfinite(logits_of(np.array([0.0, 1.0]))).all()


def test_a_ctr_model_serves_its_calibrated_scores(tmp_path, tiny_spec_path, tiny_splits):
    from mdrec.data.log import load_log
    from mdrec.data.pipeline import model_inputs
    from mdrec.data.transform import Transform
    from mdrec.export.signatures import ctr_signature
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec, with_domain_values
    from mdrec.training.inference import build, predict

    spec = load_spec(tiny_spec_path)
    log = load_log(tiny_splits["train"], spec)
    transform = Transform.fit(log, spec)
    spec = with_domain_values(spec, transform.domains)
    inputs = model_inputs(log, spec, np.full((len(log.frame), 5), "", dtype=object))
    inputs["user_id"] = inputs["user_id"].copy()
    inputs["user_id"][:40] = "someone new"                 # users without a training row: group 1
    lines = np.array([transform.domains.index(d) for d in log.domains])
    pair = lines + 3 * (np.arange(len(lines)) < 40)        # line d of group g at d + 3 g
    for name in ("shared_bottom", "star", "mmoe", "separate"):
        model = build_model(name, spec, transform, hidden=[8], dropout=0.0)
        build(model, inputs)
        np.testing.assert_array_equal(model.user_groups({"user_id": tf.constant(inputs["user_id"])}).numpy(),
                                      np.arange(len(lines)) < 40)
        raw = logits_of(predict(model, inputs))
        scale, shift = np.array([2.0, 0.5, 1.5, 1.0, 3.0, 0.7]), np.array([0.3, -0.2, 0.0, 0.1, -1.0, 0.5])
        model.calibration.assign(scale, shift)
        np.testing.assert_allclose(logits_of(predict(model, inputs)), scale[pair] * raw + shift[pair],
                                   rtol=1e-4, atol=1e-4, err_msg=name)
    one_pair = build_model("star", spec, transform, hidden=[8], calibration="platt")   # per line only
    assert one_pair.calibration.user_groups == 1 and one_pair.calibration.scale.shape == (3,)
    served = ctr_signature(model, spec, transform)
    got = served(**{k: tf.constant(v) for k, v in inputs.items()})["probability"].numpy()
    np.testing.assert_allclose(got, predict(model, inputs), rtol=1e-5, atol=1e-6)
