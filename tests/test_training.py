"""Training: it learns, resumes after a crash exactly where it stopped, and a run reloads
(and round-trips through SavedModel) with identical predictions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mdrec.cli import main
from mdrec.data.log import load_log
from mdrec.data.pipeline import as_tensors, epoch_dataset, labels_of, model_inputs, streaming_dataset
from mdrec.errors import MdrecError
from mdrec.spec import load_spec
from mdrec.training.loop import learning_rate_schedule, logloss_rising, stopped_before
from mdrec.workflows.evaluate import evaluate_run
from mdrec.workflows.train import train_run
from conftest import Crashed, crash_at, reload_and_serve, tiny_config


def _same_tables(a, b):
    import pandas as pd

    pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))


_config = tiny_config


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, tiny_spec_path, tiny_splits):
    quiet = lambda *_: None  # noqa: E731
    full = train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "full", log=quiet)
    # 420 rows / 32 = 14 batches per epoch; crash mid-epoch 2, two steps after the step-16 checkpoint.
    with pytest.raises(Crashed):
        train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "crashed", log=quiet, on_batch=crash_at(18))
    messages = []
    resumed = train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "crashed", log=messages.append)
    assert any("resuming from" in m and "epoch 2, batch 2" in m for m in messages), messages
    for split in ("valid", "test"):
        _same_tables(resumed["tables"][split], full["tables"][split])
    history = json.loads((tmp_path / "crashed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(h["valid_seconds"] >= 0 for h in history)   # validation's share of the epoch, recorded apart
    # The model learned something real on the tiny learnable log.
    assert full["tables"]["valid"][-1]["auc"] > 0.6


def test_same_folder_different_config_is_refused(tmp_path, tiny_spec_path, tiny_splits):
    train_run(tiny_spec_path, _config(tiny_splits, epochs=1), tmp_path / "r", log=lambda *_: None)
    with pytest.raises(MdrecError, match=r"different configuration or inputs \(changed: learning_rate\)"):
        train_run(tiny_spec_path, _config(tiny_splits, epochs=1, learning_rate=0.1), tmp_path / "r")


def test_run_reloads_and_round_trips_savedmodel(tmp_path, tiny_spec_path, tiny_splits, monkeypatch):
    monkeypatch.setattr("mdrec.training.calibration.MIN_ROWS", 20)  # the tiny validation split is small
    metrics = train_run(tiny_spec_path, _config(tiny_splits, epochs=2), tmp_path / "run", log=lambda *_: None)
    fitted = metrics["calibration"]["lines"]
    assert fitted["a"]["scale"] != 1.0 and "kept" not in fitted["a"]     # the calibration is in best/
    assert "fewer than 20" in fitted["c"]["kept"]
    before = {r["domain"]: r for r in metrics["calibration"]["before"]["valid"]}
    after = {r["domain"]: r for r in metrics["tables"]["valid"]}
    assert after["a"]["calibration"] == pytest.approx(1.0, abs=0.02)  # fitted there: the mean matches
    assert after["a"]["auc"] == pytest.approx(before["a"]["auc"])       # monotone within a line
    result = evaluate_run(tmp_path / "run", tiny_splits["test"])
    _same_tables(result.record["table"], metrics["tables"]["test"])    # reload gives the same metrics

    inputs, expected, served, got = reload_and_serve(tmp_path / "run", tiny_splits["test"], tmp_path)
    np.testing.assert_allclose(got["probability"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert set(served.structured_input_signature[1]) == set(inputs)    # stable, spec-named inputs


def test_streaming_matches_in_memory(tmp_path, tiny_spec_path, tiny_splits):
    import yaml

    raw = yaml.safe_load(tiny_spec_path.read_text())
    raw.pop("sequence")
    spec_path = tmp_path / "nosequence.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(spec_path)
    log = load_log(tiny_splits["train"], spec)
    in_memory = list(epoch_dataset(model_inputs(log, spec), labels_of(log), 50))
    streamed = list(streaming_dataset(tiny_splits["train"], spec, 50, chunk_rows=64))
    assert len(in_memory) == len(streamed)
    for (xa, ya), (xb, yb) in zip(in_memory, streamed):
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        for key in xa:
            np.testing.assert_array_equal(xa[key].numpy(), xb[key].numpy())
    with pytest.raises(MdrecError, match="cannot build behaviour sequences"):
        streaming_dataset(tiny_splits["train"], load_spec(tiny_spec_path), 50)


def test_epoch_batches_are_consecutive_rows_of_the_permutation_from_arrays_or_tensors():
    inputs = {"user": np.array([f"u{i}" for i in range(10)], dtype=object),
              "history": np.arange(20, dtype=np.float32).reshape(10, 2)}
    labels = np.arange(10, dtype=np.float32)
    order = np.random.default_rng([3, 1]).permutation(10)
    for source in (inputs, as_tensors(inputs)):
        batches = list(epoch_dataset(source, labels, 4, seed=3, epoch=1))
        # 10 rows in batches of 4: rows 0-3, 4-7 and a short batch of 8-9 of the epoch's order
        assert [len(y) for _, y in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), order.astype(np.float32))
        users = np.concatenate([x["user"].numpy() for x, _ in batches]).astype(str)
        np.testing.assert_array_equal(users, inputs["user"][order].astype(str))
        np.testing.assert_array_equal(batches[2][0]["history"].numpy(), inputs["history"][order[8:]])
        resumed = list(epoch_dataset(source, labels, 4, seed=3, epoch=1, skip_batches=2))
        np.testing.assert_array_equal(resumed[0][1].numpy(), batches[2][1].numpy())
    assert [len(y) for _, y in epoch_dataset(inputs, labels, 5)] == [5, 5]   # no empty last batch
    assert [len(y) for _, y in epoch_dataset(inputs, labels, 16)] == [10]    # fewer rows than a batch


def test_cli_train_and_evaluate(tmp_path, tiny_spec_path, tiny_splits, capsys):
    args = ["train", "--spec", str(tiny_spec_path), "--train", str(tiny_splits["train"]),
            "--valid", str(tiny_splits["valid"]), "--out", str(tmp_path / "cli"), "--epochs", "1",
            "--batch-size", "64", "--hidden", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "valid (star" in out and "ALL" in out
    assert main(["evaluate", "--run", str(tmp_path / "cli"), "--data", str(tiny_splits["test"])]) == 0
    assert "gauc" in capsys.readouterr().out
    assert main(["evaluate", "--run", str(tmp_path / "nothing"), "--data", str(tiny_splits["test"])]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(args[:-2] + ["--hidden", "8,x"]) == 2


def test_streaming_training_learns_and_fits_the_same_vocabulary(tmp_path, tiny_spec_path, tiny_splits):
    import yaml

    from mdrec.data.transform import Transform

    raw = yaml.safe_load(tiny_spec_path.read_text())
    raw.pop("sequence")
    spec_path = tmp_path / "nosequence.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    streamed = train_run(spec_path, _config(tiny_splits, stream=True, epochs=4), tmp_path / "s", log=lambda *_: None)
    in_memory = train_run(spec_path, _config(tiny_splits, epochs=4), tmp_path / "m", log=lambda *_: None)
    assert Transform.load(tmp_path / "s" / "transform.json") == Transform.load(tmp_path / "m" / "transform.json")
    assert streamed["train_rows"] == in_memory["train_rows"] == 420
    _same_tables(streamed["baseline"]["tables"]["test"], in_memory["baseline"]["tables"]["test"])
    assert streamed["tables"]["valid"][-1]["auc"] > 0.6


def test_sanity_rows_chosen_on_validation_and_refitted_identically(tmp_path, tiny_spec_path, tiny_splits, capsys):
    from mdrec.evaluation.baselines.ctr import LOGISTIC, MEAN
    from mdrec.evaluation.baselines.mean import ALPHAS
    from mdrec.workflows.compare import compare_runs

    metrics = train_run(tiny_spec_path, _config(tiny_splits, epochs=1), tmp_path / "run", log=lambda *_: None)
    mean = metrics["baseline"]
    grid = {float(a): auc for a, auc in mean["validation_auc"].items()}
    assert set(grid) == set(ALPHAS) and mean["alpha"] == max(grid, key=grid.get)
    logistic = metrics["baselines"][LOGISTIC]
    assert logistic["settings"]["strength"] == float(max(logistic["validation_auc"], key=logistic["validation_auc"].get))
    # evaluate and compare refit both rows on the run's training file with the stored settings:
    # the same test AUCs as the run recorded, not a new search.
    result = evaluate_run(tmp_path / "run", tiny_splits["test"])
    for name, recorded in ((MEAN, mean["tables"]["test"]), (LOGISTIC, logistic["tables"]["test"])):
        _same_tables(result.record["baselines"][name], recorded)
    table = compare_runs([tmp_path / "run"], tiny_splits["test"])
    assert list(table.index) == ["run", MEAN, LOGISTIC]
    assert table.loc[LOGISTIC, "auc"] == pytest.approx(next(r["auc"] for r in logistic["tables"]["test"]
                                                             if r["domain"] == "ALL"))
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--data", str(tiny_splits["test"])]) == 0
    assert "against the sanity baselines" in capsys.readouterr().out


def test_an_early_stop_says_so(tmp_path, tiny_spec_path, tiny_splits):
    # A learning rate of 0 never improves on epoch 1: patience 1 runs out after epoch 2 of 3.
    messages: list[str] = []
    metrics = train_run(tiny_spec_path, tiny_config(tiny_splits, epochs=3, patience=1, learning_rate=0.0),
                        tmp_path / "run", log=messages.append)
    assert metrics["stopped_early"] is True and metrics["epochs_run"] == 2 and metrics["best_epoch"] == 0
    assert ("early stopping after epoch 2 of 3: no valid auc improvement for 1 epoch(s) (--patience); "
            "best epoch 1") in messages
    assert not any(m.startswith("finished") for m in messages)


def test_output_into_a_file_gets_a_line_now_and_then_and_the_last_epoch_is_no_early_stop(
        tmp_path, tiny_spec_path, tiny_splits, monkeypatch):
    # No terminal (pytest captures stdout): no live bar, but a line every PROGRESS_SECONDS with the
    # epoch's mean loss so far, so a long epoch redirected to a file shows that it moves.
    import mdrec.training.loop as loop

    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 0.0)
    messages: list[str] = []
    # Learning rate 0: epoch 2 does not improve, and patience 1 runs out just as the epochs do.
    metrics = train_run(tiny_spec_path, tiny_config(tiny_splits, epochs=2, patience=1, learning_rate=0.0),
                        tmp_path / "run", log=messages.append)
    steps = -(-420 // 32)  # 420 training rows, batch 32
    lines = [m for m in messages if m.startswith("  batch ")]
    assert [m.split(",")[0] for m in lines] == [f"  batch {i}/{steps}" for i in [*range(1, steps + 1)] * 2]
    assert all("mean loss" in m for m in lines)
    assert metrics["stopped_early"] is False and metrics["epochs_run"] == 2
    assert "finished: reached the last epoch (2); best epoch 1" in messages
    assert not any(m.startswith("early stopping") for m in messages)


@pytest.mark.parametrize("domain_batches", [False, True])
def test_the_counted_batches_are_all_the_epoch_has(domain_batches):
    # batches_per_epoch (the progress bar's total, the distributed step count) is every batch of
    # the epoch, after a resume's skip too.
    from mdrec.training.epochs import InMemoryEpochs

    rng = np.random.default_rng(0)
    n = 1000
    inputs = {"x": rng.normal(size=n).astype(np.float32)}
    domains = rng.choice(["a", "b", "c"], n, p=[0.7, 0.25, 0.05]).astype(object)
    train = InMemoryEpochs(inputs, np.zeros(n, np.float32), 64, seed=0, domains=domains if domain_batches else None)
    for skip in (0, 5):
        batches = list(train.epoch(1, skip))
        assert len(batches) == train.batches_per_epoch - skip
    assert sum(len(y) for _, y in train.epoch(1, 0)) == n


@pytest.mark.parametrize("decay_steps, warmup_steps, expected", [
    # steps 0, 2, 4, 6, 8, 10 and 14 of a rate of 2e-3
    (None, 0, [2e-3] * 7),
    (None, 4, [0.0, 1e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-3]),  # linear to the rate, then the rate
    (8, 0, [2e-3, 1.7071e-3, 1e-3, 0.2929e-3, 0.0, 0.0, 0.0]),  # (1 + cos(pi t / 8)) / 2 of the rate
    (12, 4, [0.0, 1e-3, 2e-3, 1.7071e-3, 1e-3, 0.2929e-3, 0.0]),  # warm-up, then that cosine over 12 - 4
])
def test_the_learning_rate_warms_up_linearly_and_decays_on_a_cosine(decay_steps, warmup_steps, expected):
    schedule = learning_rate_schedule(2e-3, decay_steps, warmup_steps)
    rates = [float(schedule(t)) if callable(schedule) else schedule for t in (0, 2, 4, 6, 8, 10, 14)]
    np.testing.assert_allclose(rates, expected, atol=1e-7)


def test_logloss_rising_needs_every_recent_epoch_above_the_earlier_best():
    def history(*losses):
        return [{"epoch": e, "valid_logloss": v} for e, v in enumerate(losses)]

    assert logloss_rising(history(0.50, 0.48, 0.49, 0.495), 2) == (1, 0.48)
    assert logloss_rising(history(0.50, 0.48, 0.49, 0.47), 2) is None    # a new best
    assert logloss_rising(history(0.50, 0.48, 0.47, 0.49), 2) is None    # the best is recent
    assert logloss_rising(history(0.50, 0.51), 2) is None                # too few epochs to tell
    assert logloss_rising([{"epoch": 0, "valid_auc": 0.7}] * 4, 2) is None   # no logloss (retrieval)


def test_a_resumed_run_that_had_stopped_early_stays_stopped():
    def history(*points):  # (valid auc, valid logloss) per epoch
        return [{"epoch": e, "valid_auc": a, "valid_logloss": v} for e, (a, v) in enumerate(points)]

    def state(epoch, best_epoch, bad_epochs):
        return {"epoch": epoch, "best_epoch": best_epoch, "bad_epochs": bad_epochs}

    # Stopped by the logloss rule with one bad epoch of patience 2: AUC rose at epoch 1, not at 2,
    # and logloss has stayed above epoch 0's for two epochs (the rule restore used to miss).
    rising = history((0.70, 0.40), (0.71, 0.41), (0.705, 0.42))
    assert stopped_before(state(3, 1, 1), 10, 2, rising)
    assert stopped_before(state(3, 0, 2), 10, 2, history((0.7, 0.4), (0.69, 0.39), (0.69, 0.38)))  # patience
    assert not stopped_before(state(2, 1, 0), 10, 2, rising[:2])           # killed mid-run: goes on
    assert not stopped_before(state(3, 2, 0), 10, 2, rising)               # last epoch improved
    assert not stopped_before(state(3, 1, 1), 3, 2, rising)                # finished: the loop ends anyway
    assert not stopped_before(state(0, -1, 0), 10, 2, [])


def test_the_training_step_is_traced_once_per_batch_shape():
    # The optimizer's slots exist before the first step: a step that creates variables is traced
    # twice by tf.function, a cost of seconds for every run. Full batches and the epoch's last,
    # smaller one share one trace over any number of epochs.
    import tensorflow as tf
    import tf_keras

    from mdrec.training.epochs import InMemoryEpochs
    from mdrec.training.loop import LocalSteps

    class Linear(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x["x"][:, None])[:, 0]

        def training_loss(self, x, y):
            return tf.square(self(x) - y)

    n = 1000
    rng = np.random.default_rng(0)
    x = rng.normal(size=n).astype(np.float32)
    model, optimizer = Linear(), tf_keras.optimizers.Adam(0.1)
    model({"x": x[:2]})
    steps = LocalSteps(InMemoryEpochs({"x": x}, 3 * x, 64, seed=0))
    steps.compile(model, optimizer)
    assert len(optimizer.variables()) == 1 + 2 * len(model.trainable_variables)   # iterations, m and v
    losses: list = []
    for epoch in range(6):
        steps.run_epoch(epoch, 0, losses.append)
    # In-memory epochs are read inside the step (one trace for every epoch and the short last batch).
    assert steps._next_step.experimental_get_tracing_count() == 1
    assert steps._step.experimental_get_tracing_count() == 0
    assert len(losses) == 6 * 16 and int(optimizer.iterations) == 6 * 16   # 15 batches of 64 and one of 40
    assert float(model.dense.kernel[0, 0]) == pytest.approx(3.0, abs=0.25)   # it learned y = 3x
    steps.run_epoch(6, 10, losses.append)                                    # a resumed epoch: the last 6
    assert len(losses) == 6 * 16 + 6 and steps._next_step.experimental_get_tracing_count() == 1


def test_windows_of_every_width_share_the_training_steps_one_trace():
    """The pretraining batches (windows of several widths, the last batch shorter) reuse the step's
    one trace (a trace of a model holding a sequence encoder costs seconds); each step still sees
    its batch as it is."""
    import tensorflow as tf
    import tf_keras

    from mdrec.pretraining.batches import SequenceBatches
    from mdrec.training.loop import LocalSteps

    class Summed(tf_keras.Model):
        """loss of a window = w x the sum of its ids: the batch's own shape reaches the loss."""

        def __init__(self):
            super().__init__()
            self.w = tf.Variable(1.0)

        def training_loss(self, x, y):
            return self.w * tf.reduce_sum(tf.cast(x["ids"], tf.float32), axis=1) - y

    # 12 histories of 1 to 70 items (each item row 2) in batches of 5, 5 and 2 windows.
    histories = [np.full(n, 2, np.int32) for n in (1, 5, 9, 20, 30, 33, 40, 50, 64, 65, 68, 70)]
    train = SequenceBatches(histories, width=96, batch_size=5, seed=0, width_step=32, chunk=1)
    shapes = {x["ids"].shape for x, _ in train.epoch(0, 0)}
    assert len({rows for rows, _ in shapes}) == 2 and len({width for _, width in shapes}) == 2
    steps = LocalSteps(train)
    steps.compile(Summed(), tf_keras.optimizers.SGD(0.0))
    losses: list = []
    steps.run_epoch(0, 0, losses.append)
    lengths = np.asarray([len(h) for h in histories])
    assert sorted(losses) == pytest.approx(sorted(2.0 * lengths[b].mean() for b in train.batches(0)))
    assert steps._step.experimental_get_tracing_count() == 1


def test_open_signature_leaves_the_named_dims_of_dense_values_open():
    import tensorflow as tf

    from mdrec.training.loop import open_signature

    batch = ({"ids": np.zeros((4, 7), np.int32), "tag": np.array(["a"] * 4, dtype=object),
              "bag": tf.ragged.constant([[1], [2, 3], [], [4]])}, np.zeros(4, np.float32))
    x, y = open_signature(batch, (0, 1))
    assert x["ids"] == tf.TensorSpec([None, None], tf.int32) and x["tag"] == tf.TensorSpec([None], tf.string)
    assert y == tf.TensorSpec([None], tf.float32)
    assert isinstance(x["bag"], tf.RaggedTensorSpec)           # a ragged value keeps its own spec
    assert open_signature(batch, (0,))[0]["ids"] == tf.TensorSpec([None, 7], tf.int32)


def test_runs_on_the_same_split_fit_the_sanity_rows_once_and_a_changed_split_refits(
        tmp_path, tiny_spec_path, tiny_splits, monkeypatch):
    from collections import OrderedDict

    import pandas as pd

    from mdrec.evaluation.baselines.ctr import fit_ctr_baselines
    from mdrec.workflows import train as train_module

    monkeypatch.setattr(train_module, "_FITTED_ROWS", OrderedDict())
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return fit_ctr_baselines(*args, **kwargs)

    monkeypatch.setattr(train_module, "fit_ctr_baselines", counted)
    quiet = dict(overwrite=True, log=lambda *_: None)
    first = train_run(tiny_spec_path, tiny_config(tiny_splits, epochs=1), tmp_path / "a", **quiet)
    second = train_run(tiny_spec_path, tiny_config(tiny_splits, epochs=1, model="star"), tmp_path / "b", **quiet)
    assert len(calls) == 1
    same = [json.dumps(m[k], sort_keys=True) for m in (first, second) for k in ("baseline", "baselines")]
    assert same[:2] == same[2:]                       # (json: a NaN cell equals itself)
    assert second["missing_values"]["train"] == first["missing_values"]["train"]
    frame = pd.read_csv(tiny_splits["train"])
    frame.iloc[:-40].to_csv(tiny_splits["train"], index=False)        # other training bytes: fitted again
    third = train_run(tiny_spec_path, tiny_config(tiny_splits, epochs=1), tmp_path / "c", **quiet)
    assert len(calls) == 2
    assert json.dumps(third["baseline"]["tables"]) != json.dumps(first["baseline"]["tables"])
