"""Training on every grade: the levels fitted from a rating column, the thresholds' loss worked by
hand, and a CTR run that trains on the levels while it predicts and serves the click."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from sklearn.metrics import roc_auc_score

from mdrec.data.grades import GradeLevels
from mdrec.data.log import load_log
from mdrec.evaluation.baselines.ctr import GRADED, LOGISTIC, ctr_ids
from mdrec.evaluation.baselines.logistic import FirstOrderLogistic
from mdrec.layers.grades import GradeThresholds
from mdrec.spec import parse_spec


def _spec(rule: str | None):
    label = {"column": "rating", "positive_if": rule} if rule else {"column": "click"}
    return parse_spec({"name": "g", "label": label,
                       "features": [{"name": "user_id", "role": "user_id", "type": "categorical"},
                                    {"name": "item_id", "role": "item_id", "type": "categorical"}]})


RATINGS = {1.0: 10, 2.0: 10, 3.0: 30, 4.0: 30, 5.0: 20}   # 100 training rows


def test_levels_count_the_thresholds_passed_and_the_click_is_one_of_them():
    levels = GradeLevels.fit(RATINGS, _spec(">= 4"))
    assert isinstance(levels, GradeLevels)
    assert levels.thresholds == (2.0, 3.0, 4.0, 5.0) and levels.click_level == 3
    np.testing.assert_allclose(levels.shares, [0.9, 0.8, 0.5, 0.2])          # rows at >= 2, 3, 4, 5
    np.testing.assert_array_equal(levels.levels(np.array([1, 2, 3, 4, 5.0])), [0, 1, 2, 3, 4])
    assert levels.describe() == "rating >= 2, 3, 4, 5 (the click is >= 4)"
    # "> 3" is the same cut on these grades; a "<" rule counts downward.
    assert GradeLevels.fit(RATINGS, _spec("> 3")) == levels
    low = GradeLevels.fit(RATINGS, _spec("< 3"))
    assert isinstance(low, GradeLevels)
    assert low.thresholds == (4.0, 3.0, 2.0, 1.0) and low.click_level == 3
    np.testing.assert_array_equal(low.levels(np.array([5, 4, 2, 1.0])), [0, 1, 3, 4])
    clicks = np.array([5, 4, 2, 1.0]) < 3
    np.testing.assert_array_equal(low.levels(np.array([5, 4, 2, 1.0])) >= low.click_level, clicks)
    assert GradeLevels.from_dict(json.loads(json.dumps(levels.to_dict()))) == levels
    # "== 5" on a 1-5 scale is the top grade: ">= 5", a threshold; "== 3" is not one.
    top = GradeLevels.fit(RATINGS, _spec("== 5"))
    assert isinstance(top, GradeLevels) and top.thresholds == (2.0, 3.0, 4.0, 5.0) and top.click_level == 4


@pytest.mark.parametrize("counts, rule, reason", [
    (RATINGS, None, "the label is a 0/1 column"),
    (RATINGS, "== 3", "the rule '== 3' is not a threshold"),
    ({float(v): 1 for v in range(11)}, ">= 4", "rating has more than 10 distinct training values"),
    ({0.0: 5, 1.0: 5}, ">= 1", "rating has 2 distinct training values: the click is all it says"),
    ({4.0: 5, 5.0: 5, 3.5: 1}, ">= 3", "every training row has the same label"),
])
def test_no_levels_come_with_the_reason(counts, rule, reason):
    assert GradeLevels.fit(counts, _spec(rule)) == reason


def _bce(label: float, logit: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_threshold_logits_and_their_loss_worked_by_hand():
    layer = GradeThresholds(click_level=2, shares=[0.8, 0.5, 0.2], weight=0.5)
    start = [math.log(4) - 0.0, 0.0, math.log(0.25) - 0.0]     # logit(share) - logit(0.5)
    logits = layer(tf.constant([0.3, -1.0])).numpy()
    np.testing.assert_allclose(logits, [[0.3 + start[0], 0.3, 0.3 + start[2]],
                                        [-1.0 + start[0], -1.0, -1.0 + start[2]]], rtol=1e-6)
    # The click's offset stays 0 whatever its weight holds; the others move.
    layer.offsets.assign([1.0, 7.0, -1.0])
    logits = layer(tf.constant([0.3, -1.0])).numpy()
    np.testing.assert_allclose(logits, [[1.3, 0.3, -0.7], [0.0, -1.0, -2.0]], rtol=1e-6)
    loss = layer.cross_entropy(tf.constant([2.0, 0.0]), tf.constant(logits)).numpy()
    # Level 2 passes thresholds 1 and 2 (the click), not 3; level 0 passes none.
    row0 = 0.5 * _bce(1, 1.3) + _bce(1, 0.3) + 0.5 * _bce(0, -0.7)
    row1 = 0.5 * _bce(0, 0.0) + _bce(0, -1.0) + 0.5 * _bce(0, -2.0)
    np.testing.assert_allclose(loss, [row0, row1], rtol=1e-5)
    # Weight 0: the click's own cross-entropy, nothing else.
    click_only = GradeThresholds(click_level=2, shares=[0.8, 0.5, 0.2], weight=0.0)
    got = click_only.cross_entropy(tf.constant([2.0, 0.0, 3.0]), click_only(tf.constant([0.3, -1.0, 2.0]))).numpy()
    np.testing.assert_allclose(got, [_bce(1, 0.3), _bce(0, -1.0), _bce(1, 2.0)], rtol=1e-5)
    again = GradeThresholds.from_config(layer.get_config())
    assert (again.click_level, again.shares, again.weight) == (2, (0.8, 0.5, 0.2), 0.5)
    with pytest.raises(ValueError, match="click_level must be in 1..3"):
        GradeThresholds(click_level=4, shares=[0.8, 0.5, 0.2])


def _graded_splits(folder):
    """The tiny log with a 1-5 rating column instead of the click (the click is rating >= 4)."""
    from conftest import tiny_frame

    frame = tiny_frame(600)
    rng = np.random.default_rng(3)
    frame["rating"] = np.where(frame.click == 1, rng.integers(4, 6, len(frame)), rng.integers(1, 4, len(frame)))
    paths = {}
    for name, part in (("train", frame.iloc[:420]), ("valid", frame.iloc[420:510]), ("test", frame.iloc[510:])):
        paths[name] = folder / f"{name}.csv"
        part.drop(columns="click").to_csv(paths[name], index=False)
    return paths


def test_a_ctr_run_trains_on_the_levels_and_still_predicts_the_click(tmp_path, tiny_spec_path):
    from conftest import tiny_config

    from mdrec.data.pipeline import labels_of
    from mdrec.models.registry import build_model
    from mdrec.training.inference import predict
    from mdrec.workflows.evaluate import ctr_baselines_of
    from mdrec.workflows.restore import restore_for, restore_trained
    from mdrec.workflows.train import train_run

    spec_path = tmp_path / "graded.yaml"
    spec_path.write_text(tiny_spec_path.read_text().replace("label: {column: click}",
                                                            'label: {column: rating, positive_if: ">= 4"}'))
    paths = _graded_splits(tmp_path)
    metrics = train_run(str(spec_path), tiny_config(paths, epochs=2), tmp_path / "run", log=lambda *_: None)
    assert metrics["grades"] == ("training on every grade: rating >= 2, 3, 4, 5 (the click is >= 4), "
                                 "the other thresholds weighted 0.5")

    r = restore_for(tmp_path / "run", paths["train"])
    # Its sanity rows include the logistic model on every grade (the same signal, no network): the
    # table's AUC is that of the model fitted on the training grades at the strength it recorded, and
    # `mdrec evaluate`/`compare` refit the same row.
    graded = metrics["baselines"][GRADED]
    test = load_log(paths["test"], r.spec)
    by_hand = FirstOrderLogistic(graded["settings"]["strength"]).fit(
        *ctr_ids(r.log, r.spec), grades=r.log.grades, levels=r.transform.grade_levels)
    scores = by_hand.predict(*ctr_ids(test, r.spec)[:3])
    auc = {row["domain"]: row["auc"] for row in graded["tables"]["test"]}["ALL"]
    assert auc == pytest.approx(roc_auc_score(test.labels, scores))
    refit = {b.name: b for b in ctr_baselines_of(r.run, r.config, r.spec)[0]}
    np.testing.assert_allclose(refit[GRADED].predict(*ctr_ids(test, r.spec)[:3]), scores, rtol=1e-6)
    restore_trained(r.model, r.run, r.inputs)
    levels = r.transform.grade_levels
    assert levels is not None and levels.click_level == 3 and r.model.grades is not None
    batch = {k: tf.constant(v[:64]) for k, v in r.inputs.items()}
    clicks = labels_of(r.log)[:64]
    logit = r.model(batch, training=True)
    click_loss = tf_keras.losses.binary_crossentropy(clicks, logit, from_logits=True).numpy()
    # The loss is the thresholds' over the levels, of which the click is one.
    row_levels = levels.levels(r.log.grades[:64])
    np.testing.assert_array_equal(row_levels >= 3, clicks > 0)
    got = r.model.training_loss(batch, tf.constant(row_levels)).numpy()
    np.testing.assert_allclose(got, r.model.grades.cross_entropy(tf.constant(row_levels),
                                                                  r.model.grades(logit)).numpy(), rtol=1e-5)
    assert np.all(got > click_loss)
    # What it predicts (and serves) is the click: the calibrated sigmoid of the click's logit.
    served = predict(r.model, {k: v[:64] for k, v in r.inputs.items()})
    np.testing.assert_allclose(served, tf.sigmoid(r.model(batch)).numpy(), rtol=1e-5, atol=1e-6)
    # grades=false: the same model on the clicks, its loss the click's cross-entropy.
    off = build_model("shared_bottom", r.spec, r.transform, hidden=[16], grades=False)
    assert off.grades is None
    off_logit = off(batch, training=True)
    np.testing.assert_allclose(off.training_loss(batch, tf.constant(clicks)).numpy(),
                               tf_keras.losses.binary_crossentropy(clicks, off_logit, from_logits=True).numpy(),
                               rtol=1e-5)


def test_a_streamed_run_trains_on_the_click_and_says_why(tmp_path, tiny_spec_path):
    import yaml
    from conftest import tiny_config

    from mdrec.data.transform import Transform
    from mdrec.workflows.train import train_run

    raw = yaml.safe_load(tiny_spec_path.read_text())
    raw.pop("sequence")  # (a streamed log has no behaviour sequences)
    raw["label"] = {"column": "rating", "positive_if": ">= 4"}
    spec_path = tmp_path / "graded.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    metrics = train_run(spec_path, tiny_config(_graded_splits(tmp_path), stream=True, epochs=1), tmp_path / "run",
                        log=lambda *_: None)
    assert metrics["grades"] == "training on the click alone: a streamed log's batches carry the clicks only"
    transform = Transform.load(tmp_path / "run" / "transform.json")
    assert transform.grades is None and transform.grades_off == "a streamed log's batches carry the clicks only"
    assert GRADED not in metrics["baselines"] and LOGISTIC in metrics["baselines"]


def test_the_graded_row_is_skipped_with_its_reason_past_the_memory_cap(monkeypatch):
    from mdrec.evaluation.baselines import ctr

    rng = np.random.default_rng(0)
    grades = rng.integers(1, 6, 100).astype(float)
    ids = (rng.integers(0, 9, 100).astype(str), rng.integers(0, 7, 100).astype(str), np.zeros(100).astype(str),
           (grades >= 4).astype(int))
    levels = GradeLevels.fit(dict(zip(*np.unique(grades, return_counts=True))), _spec(">= 4"))
    assert isinstance(levels, GradeLevels) and levels.num_levels == 4
    monkeypatch.setattr(ctr, "MAX_LOGISTIC_ROWS", 399)   # 100 rows fit; 4 x 100 stacked do not
    rows = {b.name: b for b in ctr.fit_ctr_baselines([(*ids, grades)], ids, levels=levels)}
    assert rows[GRADED].skipped == ("400 stacked rows (one per row and grade threshold), more than the 399 "
                                    "the logistic row holds in memory")
    assert rows[LOGISTIC].skipped is None
    monkeypatch.setattr(ctr, "MAX_LOGISTIC_ROWS", 400)
    rows = {b.name: b for b in ctr.fit_ctr_baselines([(*ids, grades)], ids, levels=levels)}
    assert rows[GRADED].skipped is None and 0 < rows[GRADED].predict(*ids[:3]).mean() < 1
    # Its strength is searched next to the click row's: one step either way along the grid.
    assert set(rows[GRADED].grid) <= set(ctr._near(rows[LOGISTIC].settings["strength"]))
    assert ctr._near(3.0) == (1.0, 3.0, 10.0) and ctr._near(0.1) == (0.1, 0.3) and ctr._near(10.0) == (3.0, 10.0)
    assert ctr._near(0.7) == ctr.STRENGTHS   # a strength off the grid (a run's own choice): the whole grid
