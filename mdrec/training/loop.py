"""The training loop: checkpoints, resume from the last checkpoint, early stopping on validation AUC
(and on validation logloss rising, for CTR models).

The whole training state (model, optimizer slots, epoch, batch within the epoch, best AUC, epochs
without improvement) is one ``tf.train.Checkpoint``; epochs are seeded permutations, so a run killed
mid-epoch and started again continues with exactly the batches it had not yet seen. How the steps
themselves run (one process, or a tf.distribute strategy) is a :class:`Steps` object.
"""
from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Mapping, Protocol

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.errors import MdrecError
from mdrec.progress import PROGRESS_SECONDS, progress_verbosity
from mdrec.training.board import Board, Validation, scored
from mdrec.training.epochs import InMemoryEpochs, StreamingEpochs
from mdrec.training.fused_adam import FusedAdam
from mdrec.training.inference import build, save_weights, uses_autograph
from mdrec.training.run import RunDir, TrainConfig


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_score: float
    resumed_from: str | None
    stopped_early: bool


def finish_epoch(model: tf_keras.Model, run: RunDir, config: TrainConfig, state: dict, manager, history: list,
                 entry: dict, validate: Callable[[], "Validation | float"] | None, metric: str,
                 log: Callable[[str], None], board: Board | None = None) -> bool:
    """End of an epoch (every training path): validate, keep the best weights, log, append to
    history.json, advance the epoch counter, checkpoint, add the epoch's TensorBoard points.
    Returns whether to stop early (patience reached before the last epoch)."""
    epoch = int(state["epoch"])
    started = time.time()
    validation = scored(validate()) if validate is not None else None
    if validation is not None:
        entry["valid_seconds"] = round(time.time() - started, 3)
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


def stopped_before(state: Mapping[str, Any], epochs: int, patience: int, history: list[dict]) -> bool:
    """Whether a restored run had stopped early after its last finished epoch, by either of
    :func:`finish_epoch`'s rules (no score gain for ``patience`` epochs; or none this epoch while
    validation logloss rose), so that resuming a finished run does not train it further."""
    done = int(state["epoch"])
    if done == 0 or done >= epochs:
        return False
    if int(state["bad_epochs"]) >= patience:
        return True
    improved = int(state["best_epoch"]) == done - 1
    return not improved and logloss_rising(history, patience) is not None


def learning_rate_schedule(rate: float, decay_steps: int | None = None, warmup_steps: int = 0
                           ) -> float | tf_keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate of step t: ``rate`` throughout; with ``warmup_steps`` w, rising linearly
    from 0 (rate · t / w) to ``rate`` at step w; with ``decay_steps`` d, a cosine from ``rate`` (after
    any warm-up) down to 0 at step d (d counts the warm-up: the schedule ends where it would without it)."""
    warmup_steps = int(warmup_steps)
    if decay_steps:
        if not warmup_steps:
            return tf_keras.optimizers.schedules.CosineDecay(rate, int(decay_steps))
        return tf_keras.optimizers.schedules.CosineDecay(0.0, max(int(decay_steps) - warmup_steps, 1),
                                                         warmup_target=rate, warmup_steps=warmup_steps)
    if warmup_steps:  # linear from 0 to rate over the warm-up, then rate
        return tf_keras.optimizers.schedules.PolynomialDecay(0.0, warmup_steps, end_learning_rate=rate, power=1.0)
    return rate


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
    optimizer: type[tf_keras.optimizers.Adam]  # the Adam these steps need (asynchronous workers: their own)

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


def open_signature(batch: Any, dims: tuple[int, ...]) -> Any:
    """The type specs of ``batch`` (a structure of tensors or arrays) with the dimensions ``dims``
    of every dense tensor left unknown (other values, e.g. ragged ones, keep their own spec)."""
    def spec(value: Any) -> Any:
        spec = tf.type_spec_from_value(value)
        if not isinstance(spec, tf.TensorSpec):
            return spec
        return tf.TensorSpec([None if i in dims else d for i, d in enumerate(spec.shape)], spec.dtype)
    return tf.nest.map_structure(spec, batch)


def timed_steps(step: Callable[..., Any], calls: Iterable[tuple[Any, ...]],
                after_step: Callable[[float | None], None]) -> float:
    """Run ``step(*arguments)`` for every arguments of ``calls`` (a batch's (x, y), or the epoch's
    iterator), handing each loss to ``after_step``; returns the seconds spent inside the steps (the
    rest of an epoch is input and bookkeeping)."""
    in_steps = 0.0
    for arguments in calls:
        started = time.perf_counter()
        loss = float(step(*arguments))
        in_steps += time.perf_counter() - started
        after_step(loss)
    return in_steps


class LocalSteps:
    """Training steps in this process: one tf.function over ``model.training_loss``.

    An epoch of known length (the in-memory batches) is read inside the step, as Keras' ``fit``
    does: each call takes the next batch from the dataset's iterator, so no batch passes through
    Python (4-5% of a batch-1024 shared-bottom epoch on Douban, 3 rounds each way). Epochs of
    unknown length (streamed files) and batches made in Python (pretraining windows) are handed
    to the step one by one.
    """

    chief = True
    optimizer = FusedAdam

    def __init__(self, train: "InMemoryEpochs | StreamingEpochs"):
        self.train = train
        self.batches_per_epoch = train.batches_per_epoch
        self._step: Any = None       # the tf.function over (x, y)
        self._next_step: Any = None  # the tf.function over an iterator of (x, y)

    def scope(self) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def compile(self, model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer) -> None:
        # Slots made now, not in the first step: tf.function traces a step that creates variables
        # twice (seconds for every run).
        optimizer.build(model.trainable_variables)
        autograph = uses_autograph(model)

        def apply(x: Any, y: Any) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.training_loss(x, y))
                total = loss + (tf.add_n(model.losses) if model.losses else 0.0)
            grads = tape.gradient(total, model.trainable_variables)
            # A variable the objective does not read (e.g. the item bias of contrastive-only pretraining) has no gradient.
            optimizer.apply_gradients((g, v) for g, v in zip(grads, model.trainable_variables) if g is not None)
            return loss

        # No XLA: it compiles every batch shape anew, seconds each, and made the user encoder's step
        # only 4.5% faster (bench/sequence_step.py, kit_xla).
        self._step = tf.function(apply, reduce_retracing=True, autograph=autograph)
        # The iterator's element spec is the dataset's (its last, shorter batch makes the rows
        # unknown), so one trace serves every epoch.
        self._next_step = tf.function(lambda iterator: apply(*next(iterator)), autograph=autograph)

    def run_epoch(self, epoch: int, skip: int, after_step: Callable[[float | None], None]) -> float:
        assert self._step is not None, "compile() first"
        batches = self.train.epoch(epoch, skip)
        count = int(batches.cardinality()) if isinstance(batches, tf.data.Dataset) else -1  # -1: unknown
        if count >= 0:
            return timed_steps(self._next_step, itertools.repeat((iter(batches),), count), after_step)
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return 0.0
        if not self._step.experimental_get_tracing_count():
            # One trace serves every batch: a step traced for the first batch's exact shape is traced
            # again for the epoch's shorter last batch (or the next window width), seconds each when
            # the model holds a sequence encoder.
            self._step.get_concrete_function(*open_signature(first, self.train.varying_dims))
        return timed_steps(self._step, itertools.chain([first], batches), after_step)

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
    except (AssertionError, ValueError):  # missing objects, or a variable of another shape
        raise MdrecError("the run's checkpoint does not fit the model its config.json describes (was it "
                         "written by another mdrec version?); it will not resume from it", path=str(run.checkpoints),
                         # --overwrite keeps a run of the same configuration (it resumes it)
                         hint=f"use a new --out, or delete {run.path} to start over") from None


def fit(model: tf_keras.Model, run: RunDir, config: TrainConfig, train: "InMemoryEpochs | StreamingEpochs",
        validate: Callable[[], Any] | None, *, metric: str = "valid_auc",
        log: Callable[[str], None] = print, on_batch: Callable[[int], None] | None = None,
        after_build: Callable[[tf_keras.Model], None] | None = None,
        decay_steps: int | None = None, warmup_steps: int = 0, steps: Steps | None = None,
        resume_from: Path | None = None) -> FitResult:
    """Train ``model`` in ``run``, resuming from ``run/checkpoints`` if a checkpoint is there.

    ``model.training_loss(x, y)`` gives the batch loss; ``validate()`` the score to maximise
    (recorded in history.json under ``metric``), checked after every epoch for early stopping.
    ``after_build(model)`` initialises weights once they exist (ID warm start); a checkpoint, if
    there is one, then overrides them.
    ``decay_steps``: the learning rate follows a cosine from ``config.learning_rate`` down to 0 over
    that many steps (the optimizer's step count is in the checkpoint, so a resumed run continues the
    curve); ``warmup_steps``: it first rises linearly from 0 over that many steps
    (:func:`learning_rate_schedule`). ``steps``: how the steps run (default: :class:`LocalSteps` over ``train``; a
    tf.distribute strategy's :class:`~mdrec.training.distribute.StrategySteps`); ``train`` then
    only provides the rows that build the model. ``resume_from``: the checkpoints folder to resume
    from when it is not ``run``'s (a multi-worker non-chief restores the chief's, writes to scratch).
    """
    steps = steps if steps is not None else LocalSteps(train)
    tf_keras.utils.set_random_seed(config.seed)
    with steps.scope():
        build(model, train.sample())
        if after_build is not None:
            after_build(model)
        optimizer = steps.optimizer(learning_rate_schedule(config.learning_rate, decay_steps, warmup_steps))
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
    stopped_early = stopped_before(state, config.epochs, config.patience, history)
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
        losses.sync()
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses.values)) if losses.values else None,
                 "seconds": round(time.time() - started, 3), "steps": losses.batch - skip,
                 "learning_rate": learning_rate_now(optimizer)}
        if in_steps is not None:
            entry["step_seconds"] = round(in_steps, 3)
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
    """One epoch's bookkeeping after each step: counters, progress, periodic checkpoints, losses.

    The step and batch counters live in Python during the epoch and reach the checkpointed
    variables only before a save and at the epoch's end (:meth:`sync`): two variable updates and
    their reads after every step cost 0.8 ms, a tenth of a batch-1024 shared-bottom step."""

    def __init__(self, steps: Steps, state: dict[str, tf.Variable], config: TrainConfig,
                 manager: tf.train.CheckpointManager, verbose: int, on_batch: Callable[[int], None] | None,
                 log: Callable[[str], None], started: float):
        self.steps, self.state, self.config, self.manager = steps, state, config, manager
        self.verbose, self.on_batch, self.log = verbose, on_batch, log
        self.started = self.last_note = started
        self.step, self.batch = int(state["step"]), int(state["batch"])
        self.values: list[float] = []
        self.bar = tf_keras.utils.Progbar(steps.batches_per_epoch, verbose=verbose)  # shows the running epoch mean

    def sync(self) -> None:
        """Write the counters to the checkpointed variables."""
        self.state["step"].assign(self.step)
        self.state["batch"].assign(self.batch)

    def extend(self, losses: list[float]) -> None:
        self.values.extend(losses)
        if losses:
            self.bar.update(self.batch)

    def after_step(self, loss: float | None) -> None:
        self.step += 1
        self.batch += 1
        if loss is not None:
            self.values.append(loss)
            if self.verbose:
                self.bar.update(self.batch, values=[("loss", loss)])
        if self.verbose == 2 and self.values and time.time() - self.last_note >= PROGRESS_SECONDS:
            # No live bar into a file or pipe: a line now and then, so a long epoch shows it moves.
            self.last_note = time.time()
            total = f"/{self.steps.batches_per_epoch}" if self.steps.batches_per_epoch else ""
            self.log(f"  batch {self.batch}{total}, mean loss {np.mean(self.values):.4f}, "
                     f"{self.last_note - self.started:.0f} s")
        if self.step % self.config.checkpoint_every == 0:
            self.extend(self.steps.flush())  # asynchronous steps finish before their state is saved
            self.sync()
            self.manager.save(checkpoint_number=self.step)
        if self.on_batch is not None:
            self.on_batch(self.step)
