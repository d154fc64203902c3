"""The training loop: checkpoints, resume from the last checkpoint, early stopping on validation AUC
(and on validation logloss rising, for CTR models).

The whole training state (model, optimizer slots, epoch, batch within the epoch, best AUC, epochs
without improvement) is one ``tf.train.Checkpoint``; epochs are seeded permutations, so a run killed
mid-epoch and started again continues with exactly the batches it had not yet seen.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.pipeline import count_domain_batches, domain_batch_dataset, epoch_dataset, predict_dataset
from mdrec.evaluation.metrics import ctr_report
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory
from mdrec.data.signature import input_signature
from mdrec.progress import PROGRESS_SECONDS, progress_verbosity, quiet_progress  # noqa: F401 (re-exported)
from mdrec.training.board import Board, Validation, per_line, scored
from mdrec.training.run import RunDir, TrainConfig


TRAIN_SAMPLE = 20_000  # training rows scored at each epoch's end for the train curves


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_score: float
    resumed_from: str | None
    stopped_early: bool


def build(model: tf_keras.Model, inputs: dict[str, np.ndarray]) -> None:
    """Create the model's variables by calling it on two rows (restores need the variables)."""
    sample = {name: values[:2] for name, values in inputs.items()}
    build_variables = getattr(model, "build_variables", None)  # models with more than one tower
    if build_variables is not None:
        build_variables(sample)
    else:
        model(sample, training=False)


def predict(model: tf_keras.Model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Click probabilities, float64 [N]."""
    _prepare_inference(model)
    spec = getattr(model, "spec", None)
    scores = run_batched(model, "_mdrec_predict_step", lambda x: tf.sigmoid(model(x, training=False)),
                         input_signature(spec) if spec is not None else None, inputs, batch_size)
    return scores.astype(np.float64) if len(scores) else np.zeros(0)


def run_batched(model: tf_keras.Model, name: str, fn, signature: dict | None, inputs: dict[str, np.ndarray],
                batch_size: int = 4096) -> np.ndarray:
    """``fn`` over ``inputs`` in batches, concatenated (empty array when there are no rows).

    One tf.function per model and ``name``, traced with the fixed input ``signature`` (the
    inputs are narrowed to it), not one trace per call.
    """
    step = getattr(model, name, None)
    if step is None:
        step = tf.function(fn, input_signature=[signature] if signature is not None else None,
                           reduce_retracing=True, autograph=uses_autograph(model))
        setattr(model, name, step)
    if signature is not None:
        inputs = {k: v for k, v in inputs.items() if k in signature}
    parts = [step(batch).numpy() for batch in predict_dataset(inputs, batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def uses_autograph(model: tf_keras.Model) -> bool:
    """Whether the model's tf.functions need AutoGraph. A model whose calls branch only on Python
    values says ``autograph = False``: converting its code cost a third of a small run's training
    (seconds per trace); code that branches on tensors (TFRS' tasks) needs the conversion."""
    return bool(getattr(model, "autograph", True))


def _prepare_inference(model: tf_keras.Model) -> None:
    # STAR serves from fused per-domain weights once fused (correct without, one multiply slower).
    prepare = getattr(model, "prepare_inference", None)
    if prepare is not None:
        prepare()


def save_weights(model: tf_keras.Model, folder) -> None:
    _prepare_inference(model)
    with atomic_directory(folder) as tmp:
        tf.train.Checkpoint(model=model).write(str(tmp / "weights"))


def restore_weights(model: tf_keras.Model, folder) -> None:
    status = tf.train.Checkpoint(model=model).read(str(folder / "weights")).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError:
        raise MdrecError("the saved weights do not fit the model its config.json describes (was the run "
                         "trained by another mdrec version?)", path=str(folder),
                         hint="retrain the run with this version") from None
    _prepare_inference(model)


class InMemoryEpochs:
    """Training batches from arrays in memory: a seeded permutation per epoch; with ``domains``,
    every batch comes from one domain (``--domain-batches``)."""

    def __init__(self, inputs: dict[str, np.ndarray], labels: np.ndarray, batch_size: int, seed: int,
                 domains: np.ndarray | None = None):
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed
        self.domains = domains
        self.batches_per_epoch: int | None = (-(-len(labels) // batch_size) if domains is None
                                              else count_domain_batches(domains, batch_size))

    def sample(self) -> dict[str, np.ndarray]:
        return self.inputs

    def epoch(self, epoch: int, skip_batches: int) -> tf.data.Dataset:
        if self.domains is not None:
            return domain_batch_dataset(self.inputs, self.labels, self.domains, self.batch_size,
                                        seed=self.seed, epoch=epoch, skip_batches=skip_batches)
        return epoch_dataset(self.inputs, self.labels, self.batch_size, seed=self.seed, epoch=epoch,
                             skip_batches=skip_batches)


class StreamingEpochs:
    """Training batches read from disk each epoch (bounded memory); resume skips seen batches."""

    def __init__(self, make_dataset: Callable[[int], tf.data.Dataset], sample: dict[str, np.ndarray]):
        self.make_dataset = make_dataset
        self._sample = sample
        self.batches_per_epoch = None  # unknown without a pass over the files

    def sample(self) -> dict[str, np.ndarray]:
        return self._sample

    def epoch(self, epoch: int, skip_batches: int) -> tf.data.Dataset:
        return self.make_dataset(epoch).skip(skip_batches)


def auc_validation(model: tf_keras.Model, inputs: dict[str, np.ndarray], labels: np.ndarray,
                   lines: np.ndarray | None = None, train: tuple | None = None) -> Callable[[], Validation]:
    """Early-stopping score of a CTR model: AUC on the validation rows.

    ``lines`` (object [N]): each row's line, for the curves per line. ``train``: (inputs, labels,
    lines) of a fixed sample of training rows, scored the same way for the train curves.
    """
    def validate() -> Validation:
        probabilities = predict(model, inputs)
        scalars = ctr_scalars(labels, probabilities, lines)
        result = Validation(score=scalars["auc"], scalars=scalars)
        if lines is not None:
            result.histograms = {f"score/{line}": probabilities[lines == line] for line in np.unique(lines)}
        if train is not None:
            train_inputs, train_labels, train_lines = train
            result.train_scalars = ctr_scalars(train_labels, predict(model, train_inputs), train_lines)
        return result

    return validate


def ctr_scalars(labels: np.ndarray, probabilities: np.ndarray, lines: np.ndarray | None) -> dict[str, float]:
    """auc and logloss overall ("auc") and per line ("auc/books") from :func:`ctr_report`'s table
    (a line with one class has no AUC: NaN, left out of the curves)."""
    per_domain = lines is not None and len(np.unique(lines)) > 1
    frame = pd.DataFrame({"label": labels, "score": probabilities, "line": lines if per_domain else ""})
    table = ctr_report(frame, label="label", score="score", domain="line" if per_domain else None)
    return {**per_line("auc", table["auc"].to_dict()), **per_line("logloss", table["logloss"].to_dict())}


def training_sample(inputs: dict[str, np.ndarray], labels: np.ndarray, lines: np.ndarray, seed: int,
                    size: int = TRAIN_SAMPLE) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A seeded sample of at most ``size`` training rows for the train curves (same rows every epoch)."""
    if len(labels) <= size:
        return inputs, labels, lines
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), size, replace=False))
    return {k: v[rows] for k, v in inputs.items()}, labels[rows], lines[rows]


def finish_epoch(model: tf_keras.Model, run: RunDir, config: TrainConfig, state: dict, manager, history: list,
                 entry: dict, validate: Callable[[], "Validation | float"] | None, metric: str,
                 log: Callable[[str], None], board: Board | None = None) -> bool:
    """End of an epoch (every training path): validate, keep the best weights, log, append to
    history.json, advance the epoch counter, checkpoint, add the epoch's TensorBoard points.
    Returns whether to stop early (patience reached before the last epoch)."""
    epoch = int(state["epoch"])
    validation = scored(validate()) if validate is not None else None
    if validation is not None:
        entry[metric] = float(validation.score)
        if "logloss" in validation.scalars:
            entry["valid_logloss"] = float(validation.scalars["logloss"])
        improved = np.isfinite(entry[metric]) and entry[metric] > float(state["best_auc"])
    else:
        improved = True  # without validation the last epoch is the best one
    if improved:
        state["best_auc"].assign(entry.get(metric, float("nan")))
        state["best_epoch"].assign(epoch)
        state["bad_epochs"].assign(0)
        save_weights(model, run.best)
    else:
        state["bad_epochs"].assign_add(1)
    log(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f}"
        + (f", {metric.replace('_', ' ')} {entry[metric]:.4f}" if metric in entry else "")
        + (" (best)" if improved else f" (no improvement for {int(state['bad_epochs'])})")
        + (f", {entry['steps']} steps in {entry['seconds']:.1f} s" if "steps" in entry else ""))
    history.append(entry)
    run.write_history(history)
    state["epoch"].assign_add(1)
    state["batch"].assign(0)
    manager.save(checkpoint_number=int(state["step"]))
    if board is not None:
        board.epoch(epoch, entry, validation)
    best = f"best epoch {int(state['best_epoch']) + 1}"
    if epoch + 1 >= config.epochs:
        log(f"finished: reached the last epoch ({config.epochs}); {best}")
        return False
    if int(state["bad_epochs"]) >= config.patience:
        log(f"early stopping after epoch {epoch + 1} of {config.epochs}: no {metric.replace('_', ' ')} "
            f"improvement for {config.patience} epoch(s) (--patience); {best}")
        return True
    # Logloss alone does not stop an epoch that still raised the AUC: the calibration step after
    # training repairs overconfidence, not a worse ranking.
    overfit = None if improved else logloss_rising(history, config.patience)
    if overfit is not None:
        log(f"early stopping after epoch {epoch + 1} of {config.epochs}: valid logloss above its best "
            f"({overfit[1]:.4f}, epoch {overfit[0] + 1}) for {config.patience} epoch(s) (--patience) and no valid "
            f"auc gain this epoch: the model is overfitting; {best}")
        return True
    return False


def logloss_rising(history: list[dict], patience: int) -> tuple[int, float] | None:
    """(epoch, logloss) of the best validation logloss when each of the last ``patience`` epochs
    stayed above it, else None. Early stopping watches it beside AUC: past its best the model grows
    overconfident on what it memorised, and AUC soon follows."""
    points = [(h["epoch"], h["valid_logloss"]) for h in history if np.isfinite(h.get("valid_logloss", np.nan))]
    if len(points) <= patience:
        return None
    best = min(points[:-patience], key=lambda p: p[1])
    return best if all(loss > best[1] for _, loss in points[-patience:]) else None


def learning_rate_now(optimizer) -> float:
    """The optimizer's learning rate at its current step (a schedule evaluated there)."""
    rate = optimizer.learning_rate
    if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(tf.convert_to_tensor(rate))


LOSS_NOTE = "loss: the mean training loss of the epoch's batches so far (bar) and of the whole epoch (summary)"


class Steps(Protocol):
    """How one epoch's training steps run: in this process (:class:`LocalSteps`) or under a
    tf.distribute strategy (:class:`mdrec.training.distribute.StrategySteps`). :func:`fit` owns
    everything else: checkpoints, resume, history, validation, early stopping."""

    chief: bool  # writes the run's curves (a multi-worker non-chief does not)
    batches_per_epoch: int | None  # None: unknown before the pass (streamed files)

    def scope(self) -> ContextManager[Any]:
        """Where variables are created (the strategy's scope)."""

    def compile(self, model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer) -> None:
        """Build the step function (and, under a strategy, the optimizer's slots before a restore)."""

    def run_epoch(self, epoch: int, skip: int, after_step: Callable[[float | None], None]) -> float | None:
        """Run epoch ``epoch`` from batch ``skip``, calling ``after_step(loss)`` after each step
        (``None`` when the loss arrives later, from :meth:`flush`). Returns the seconds spent
        inside the steps, or None when they are not measured (asynchronous steps)."""

    def flush(self) -> list[float]:
        """Wait for steps still running; their losses (before a checkpoint and at the epoch's end)."""


class LocalSteps:
    """Training steps in this process: one tf.function over ``model.training_loss``."""

    chief = True

    def __init__(self, train: "InMemoryEpochs | StreamingEpochs", jit_compile: bool = False):
        self.train, self.jit_compile = train, jit_compile
        self.batches_per_epoch = train.batches_per_epoch
        self._step: Callable[[Any, Any], tf.Tensor] | None = None

    def scope(self) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def compile(self, model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer) -> None:
        # jit_compile: one XLA compilation per batch shape (the pretraining batches have few).
        @tf.function(reduce_retracing=not self.jit_compile, jit_compile=self.jit_compile,
                     autograph=uses_autograph(model))
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.training_loss(x, y))
                total = loss + (tf.add_n(model.losses) if model.losses else 0.0)
            grads = tape.gradient(total, model.trainable_variables)
            # A variable the objective does not read (e.g. the item bias of contrastive-only pretraining) has no gradient.
            optimizer.apply_gradients((g, v) for g, v in zip(grads, model.trainable_variables) if g is not None)
            return loss

        self._step = train_step

    def run_epoch(self, epoch: int, skip: int, after_step: Callable[[float | None], None]) -> float:
        assert self._step is not None, "compile() first"
        in_steps = 0.0  # seconds inside the training steps; the rest of the epoch is input and bookkeeping
        for x, y in self.train.epoch(epoch, skip):
            started = time.perf_counter()
            loss = float(self._step(x, y))
            in_steps += time.perf_counter() - started
            after_step(loss)
        return in_steps

    def flush(self) -> list[float]:
        return []


def _loop_state() -> dict[str, tf.Variable]:
    return {
        "step": tf.Variable(0, dtype=tf.int64, trainable=False),
        "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "batch": tf.Variable(0, dtype=tf.int64, trainable=False),
        # Named best_auc in checkpoints of every model (it holds the best validation score).
        "best_auc": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
        "best_epoch": tf.Variable(-1, dtype=tf.int64, trainable=False),
        "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False),
    }


def _restore(checkpoint: tf.train.Checkpoint, source: str, run: RunDir) -> None:
    try:
        checkpoint.restore(source).assert_existing_objects_matched()
    except AssertionError:
        raise MdrecError("the run's checkpoint does not fit the model its config.json describes (was it "
                         "written by another mdrec version?); it will not resume from it", path=str(run.checkpoints),
                         hint="use a new --out, or --overwrite to start over") from None


def fit(model: tf_keras.Model, run: RunDir, config: TrainConfig, train: "InMemoryEpochs | StreamingEpochs",
        validate: Callable[[], Any] | None, *, metric: str = "valid_auc",
        log: Callable[[str], None] = print, on_batch: Callable[[int], None] | None = None,
        after_build: Callable[[tf_keras.Model], None] | None = None, jit_compile: bool = False,
        decay_steps: int | None = None, steps: Steps | None = None, resume_from: Path | None = None) -> FitResult:
    """Train ``model`` in ``run``, resuming from ``run/checkpoints`` if a checkpoint is there.

    ``model.training_loss(x, y)`` gives the batch loss; ``validate()`` the score to maximise
    (recorded in history.json under ``metric``), checked after every epoch for early stopping.
    ``after_build(model)`` initialises weights once they exist (ID warm start); a checkpoint, if
    there is one, then overrides them. ``jit_compile``: the one-process step is compiled with XLA.
    ``decay_steps``: the learning rate follows a cosine from ``config.learning_rate`` down to 0 over
    that many steps (the optimizer's step count is in the checkpoint, so a resumed run continues the
    curve). ``steps``: how the steps run (default: :class:`LocalSteps` over ``train``; a
    tf.distribute strategy's :class:`~mdrec.training.distribute.StrategySteps`); ``train`` then
    only provides the rows that build the model. ``resume_from``: the checkpoints folder to resume
    from when it is not ``run``'s (a multi-worker non-chief restores the chief's, writes to scratch).
    """
    steps = steps if steps is not None else LocalSteps(train, jit_compile)
    tf_keras.utils.set_random_seed(config.seed)
    with steps.scope():
        build(model, train.sample())
        if after_build is not None:
            after_build(model)
        rate = (tf_keras.optimizers.schedules.CosineDecay(config.learning_rate, int(decay_steps)) if decay_steps
                else config.learning_rate)
        optimizer = tf_keras.optimizers.Adam(rate)
        steps.compile(model, optimizer)
    state = _loop_state()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=2)
    source = tf.train.latest_checkpoint(str(resume_from)) if resume_from is not None else manager.latest_checkpoint
    if source:
        _restore(checkpoint, source, run)
        log(f"resuming from {source}: epoch {int(state['epoch']) + 1}, "
            f"batch {int(state['batch'])}, step {int(state['step'])}")
    history = [h for h in run.read_history() if h["epoch"] < int(state["epoch"])]
    stopped_early = int(state["bad_epochs"]) >= config.patience and int(state["epoch"]) < config.epochs
    verbose = progress_verbosity()
    board = Board(run.path) if steps.chief else None  # one set of curves per run: the chief's
    if verbose:
        log(LOSS_NOTE)
    while int(state["epoch"]) < config.epochs and not stopped_early:
        epoch, skip = int(state["epoch"]), int(state["batch"])
        log(f"epoch {epoch + 1}/{config.epochs}")
        started = time.time()
        losses = _EpochSteps(steps, state, config, manager, verbose, on_batch, log, started)
        in_steps = steps.run_epoch(epoch, skip, losses.after_step)
        losses.extend(steps.flush())
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses.values)) if losses.values else None,
                 "seconds": round(time.time() - started, 2), "steps": int(state["batch"]) - skip,
                 "learning_rate": learning_rate_now(optimizer)}
        if in_steps is not None:
            entry["step_seconds"] = round(in_steps, 2)
        stopped_early = finish_epoch(model, run, config, state, manager, history, entry, validate, metric, log,
                                     board)
    if board is not None:
        board.close()
    if not run.best.exists():
        save_weights(model, run.best)
    return FitResult(epochs_run=int(state["epoch"]), best_epoch=int(state["best_epoch"]),
                     best_score=float(state["best_auc"]), resumed_from=source or None,
                     stopped_early=stopped_early)


class _EpochSteps:
    """One epoch's bookkeeping after each step: counters, progress, periodic checkpoints, losses."""

    def __init__(self, steps: Steps, state: dict[str, tf.Variable], config: TrainConfig,
                 manager: tf.train.CheckpointManager, verbose: int, on_batch: Callable[[int], None] | None,
                 log: Callable[[str], None], started: float):
        self.steps, self.state, self.config, self.manager = steps, state, config, manager
        self.verbose, self.on_batch, self.log = verbose, on_batch, log
        self.started = self.last_note = started
        self.values: list[float] = []
        self.bar = tf_keras.utils.Progbar(steps.batches_per_epoch, verbose=verbose)  # shows the running epoch mean

    def extend(self, losses: list[float]) -> None:
        self.values.extend(losses)
        if losses:
            self.bar.update(int(self.state["batch"]))

    def after_step(self, loss: float | None) -> None:
        state = self.state
        state["step"].assign_add(1)
        state["batch"].assign_add(1)
        if loss is not None:
            self.values.append(loss)
            self.bar.update(int(state["batch"]), values=[("loss", loss)])
        if self.verbose == 2 and self.values and time.time() - self.last_note >= PROGRESS_SECONDS:
            # No live bar into a file or pipe: a line now and then, so a long epoch shows it moves.
            self.last_note = time.time()
            total = f"/{self.steps.batches_per_epoch}" if self.steps.batches_per_epoch else ""
            self.log(f"  batch {int(state['batch'])}{total}, mean loss {np.mean(self.values):.4f}, "
                     f"{self.last_note - self.started:.0f} s")
        if int(state["step"]) % self.config.checkpoint_every == 0:
            self.extend(self.steps.flush())  # asynchronous steps finish before their state is saved
            self.manager.save(checkpoint_number=int(state["step"]))
        if self.on_batch is not None:
            self.on_batch(int(state["step"]))
