"""``mdrec lifelong``: tasks learned in sequence by one encoder (Conure), with the baselines.

runs/NAME/
  config.json     model "lifelong", the parsed tasks file (encoder, tasks, prune rates), data paths
  spec.yaml       the spec as used
  vocabulary.json task 1's item vocabulary, and each later task's items / classes
  state/after_T/  a checkpoint of every model after task T (the resume point; a finished task is
                  never retrained when the command runs again)
  progress.json   tasks done, the metric matrices so far and wall times (written after the state)
  metrics.json    at the end: per task the metric right after it was learned and after all
                  tasks, per method; parameter counts; weight ownership
  report.txt      the same as tables

Methods (all in one run):
  conure      one encoder; per-weight owners, masked training, magnitude pruning + retraining
  sequential  one encoder fine-tuned on every task in turn, no isolation (forgets)
  per_task    one model per task: task 1's encoder (before pruning), copied and fully fine-tuned
              per later task
  adapters    PeterRec: task 1's encoder frozen, two bottleneck adapters per block and a head per
              later task

Scoring one task: :mod:`mdrec.workflows.lifelong_eval`; the tables: :mod:`mdrec.workflows.lifelong_report`.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, TypedDict

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json, atomic_write_text
from mdrec.lifelong.masks import ownership_summary, prune, train_forward_mask
from mdrec.lifelong.model import TaskModel, count
from mdrec.lifelong.task_data import TaskData, build_task_data, training_rows
from mdrec.lifelong.tasks import Task, TaskFile, parse_tasks
from mdrec.spec import load_spec
from mdrec.training.board import Board
from mdrec.training.run import RunDir, TrainConfig
from mdrec.workflows.lifelong_eval import evaluate, sanity
from mdrec.workflows.lifelong_report import report_text

MODEL = "lifelong"
PROGRESS = "progress.json"
METHODS = ("conure", "sequential", "per_task", "adapters")
LABELS = {"conure": "Conure", "sequential": "sequential fine-tuning", "per_task": "one model per task",
          "adapters": "PeterRec adapters"}
Printer = Callable[[str], None]


# What lifelong_run returns: metrics.json's record (report.txt holds its tables as text), or {"done": t} alone when
# stop_after stopped the run after task t. Tasks are keyed by their number as a string ("1", "2", ...),
# metrics by name (the task's metric, e.g. recall@10 or accuracy, and the others of its kind).
class LifelongMetrics(TypedDict, total=False):
    done: int                               # stop_after: the last task learned (the only key then)
    model: str                              # "lifelong"
    tasks: list[dict[str, Any]]             # one row per task: task, name, kind, metric, prune, sanity, sanity_value,
                                            # <method>_after_it / _after_all / _change for conure (and sequential),
                                            # per_task and adapters (baselines)
    parameters: dict[str, int]              # trainable weights: encoder, heads, conure (baselines: + per_task,
                                            # sequential, adapters)
    ownership: dict[str, Any]               # Conure's prunable kernel weights: prunable_weights, per_owner and share
                                            # (owner -> count / fraction; owner "0" is free)
    matrix: dict[str, dict[str, dict[str, dict[str, float]]]]  # conure, sequential: after task t -> task -> metrics
    right_after: dict[str, dict[str, dict[str, float]]]  # method -> task -> its metrics right after it was learned
    losses: dict[str, dict[str, list[float]]]  # task name -> conure, conure_retrain, sequential, per_task, adapters
                                            # -> mean training loss per epoch
    seconds: dict[str, dict[str, float]]    # task -> method -> wall seconds learning it
    sanity: dict[str, Any]                  # task -> [row name ("popularity" or "majority class"), its metrics]
    seconds_total_this_invocation: float    # wall seconds of this call (a resumed run: only the tasks it learned)


# ---- models -----------------------------------------------------------------------------------------

class World(tf.Module):
    """Every model of the run (so one checkpoint holds them all)."""

    def __init__(self, tasks: TaskFile, vocabulary: list[str], data: list[TaskData]):
        super().__init__(name="lifelong")
        heads = {d.task.index: (d.task.kind, d.outputs) for d in data}
        enc = tasks.encoder
        self.conure = TaskModel(vocabulary, enc, heads, isolated=True, name="conure")
        self.rng = tf.random.Generator.from_seed(tasks.seed)
        if tasks.baselines:
            self.sequential = TaskModel(vocabulary, enc, heads, name="sequential")
            self.per_task = {str(t): TaskModel(vocabulary, enc, {t: heads[t]}, name=f"per_task_{t}") for t in heads}
            self.adapters = {str(t): TaskModel(vocabulary, enc, {t: heads[t]}, adapter_bottleneck=tasks.adapter_bottleneck,
                                               name=f"adapters_{t}") for t in heads if t > 1}


def base_weights(model: TaskModel) -> list[tf.Variable]:
    """The encoder's weights without adapters, in a fixed order (copy between models)."""
    return model.encoder_other_weights() + [layer.kernel for _, layer in model.kernels()]


def copy_encoder(source: TaskModel, target: TaskModel) -> None:
    for a, b in zip(base_weights(source), base_weights(target), strict=True):
        b.assign(a)


def copy_head(source: TaskModel, target: TaskModel, task: int) -> None:
    target.head(task).set_weights(source.head(task).get_weights())


# ---- training ---------------------------------------------------------------------------------------

def train_phase(model: TaskModel, data: TaskData, variables: list[tf.Variable], *, masks=None,
                grad_masks: dict[int, tf.Tensor] | None = None, epochs: int, learning_rate: float, batch_size: int,
                negatives: int, rng: tf.random.Generator, seed: int) -> list[float]:
    """Adam on ``variables`` (a fresh optimiser: a weight whose gradient is always zero never moves)
    with the kernels multiplied by ``masks`` and the gradients of ``grad_masks`` (id(variable) ->
    0/1 mask) multiplied in. Each epoch shows every row ``data.task.repeats`` times (see
    :func:`mdrec.lifelong.task_data.training_rows`). Returns the mean loss per epoch."""
    if not epochs or not len(data.x):
        return []
    task, kind = data.task.index, data.task.kind
    optimizer = tf_keras.optimizers.Adam(learning_rate)
    optimizer.build(variables)
    gm = [None if grad_masks is None else grad_masks.get(id(v)) for v in variables]

    @tf.function(input_signature=[tf.TensorSpec([None, data.x.shape[1]], tf.string), tf.TensorSpec([None], tf.int64)],
                 autograph=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = model.loss(x, y, task, kind, masks, negatives, rng)
        grads = tape.gradient(loss, variables)
        pairs = []
        for g, m, v in zip(grads, gm, variables):
            if g is None:
                continue
            if m is not None:
                g = tf.convert_to_tensor(g) * m
            pairs.append((g, v))
        optimizer.apply_gradients(pairs)
        return loss

    order_rng = np.random.default_rng([seed, task, 11])
    losses = []
    for _ in range(epochs):
        x, y = training_rows(data, data.task.repeats, data.x.shape[1], order_rng)
        order = order_rng.permutation(len(x))
        total, n = 0.0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = step(tf.constant(x[rows]), tf.constant(y[rows]))
            total += float(loss) * len(rows)
            n += len(rows)
        losses.append(total / max(n, 1))
    return losses


# ---- one task per method ----------------------------------------------------------------------------

def learn_conure(model: TaskModel, data: TaskData, tasks: TaskFile, rng, log: Printer) -> dict:
    """Train task t in the free weights, prune, retrain the kept ones; returns losses and counts."""
    t, spec = data.task.index, data.task
    kernels = model.kernels()
    owners = model.owner_arrays()
    head = model.head(t).trainable_weights
    shared = model.encoder_other_weights() if t == 1 else []  # embeddings, biases, norms: task 1's
    kernel_vars = [layer.kernel for _, layer in kernels]
    masks = {name: tf.constant(train_forward_mask(owners[name], t)) for name, _ in kernels}
    grads = {id(layer.kernel): tf.constant((owners[name] == 0).astype(np.float32)) for name, layer in kernels}
    common = dict(batch_size=spec.batch_size, negatives=tasks.negatives, rng=rng, seed=tasks.seed)
    losses = train_phase(model, data, kernel_vars + shared + head, masks=masks, grad_masks=grads,
                         epochs=spec.epochs, learning_rate=spec.learning_rate, **common)
    before_prune = [v.numpy() for v in base_weights(model)] if t == 1 else None
    head_before_prune = model.head(t).get_weights()
    for name, layer in kernels:
        values, owner = prune(layer.kernel.numpy(), owners[name], t, spec.prune)
        layer.kernel.assign(values)
        model.owners[name].assign(owner)
    owners = model.owner_arrays()
    retrain = []
    if spec.prune > 0 and spec.retrain_epochs:
        masks = model.predict_masks(t)
        grads = {id(layer.kernel): tf.constant((owners[name] == t).astype(np.float32)) for name, layer in kernels}
        retrain = train_phase(model, data, kernel_vars + shared + head, masks=masks, grad_masks=grads,
                              epochs=spec.retrain_epochs, learning_rate=spec.learning_rate, **common)
    return {"losses": losses, "retrain_losses": retrain, "before_prune": before_prune,
            "head_before_prune": head_before_prune}


def learn_plain(model: TaskModel, data: TaskData, variables, tasks: TaskFile, rng) -> list[float]:
    spec = data.task
    return train_phase(model, data, variables, epochs=spec.epochs, learning_rate=spec.learning_rate,
                       batch_size=spec.batch_size, negatives=tasks.negatives, rng=rng, seed=tasks.seed)


# ---- the run ----------------------------------------------------------------------------------------

def lifelong_run(spec_path: str | Path, tasks_path: str | Path, out: str | Path, *, data: str | Path | None = None,
                 overwrite: bool = False, stop_after: int | None = None, log: Printer = print) -> LifelongMetrics:
    """Learn the tasks of ``tasks_path`` in order in run folder ``out`` (resumes per task).

    Returns the metrics (also written to ``out/metrics.json``; ``_report`` is report.txt's text),
    or ``{"done": t}`` when ``stop_after`` stopped the run after task t.
    """
    started = time.perf_counter()
    tasks, run, vocabulary, task_data = _prepare(spec_path, tasks_path, out, data, overwrite, log)
    world = World(tasks, vocabulary, task_data)
    checkpoint = tf.train.Checkpoint(world=world)
    progress = _resume(run, checkpoint, task_data, log)
    board = Board(run.path)
    for data in task_data[progress["done"]:]:
        t = data.task.index
        _learn_task(world, tasks, task_data, data, progress, log)
        _record_task(run, checkpoint, board, task_data, progress, t)
        if stop_after is not None and t >= stop_after:
            log(f"stopped after task {t} (--stop-after); run the command again to continue")
            return {"done": t}
    board.close()
    metrics: LifelongMetrics = final_metrics(world, tasks, task_data, progress)
    metrics["seconds_total_this_invocation"] = time.perf_counter() - started
    report = report_text(metrics)
    atomic_write_json(run.metrics_path, metrics)
    atomic_write_text(run.path / "report.txt", report)
    log(report)
    return metrics


def _prepare(spec_path: str | Path, tasks_path: str | Path, out: str | Path, data: str | Path | None,
             overwrite: bool, log: Printer) -> tuple[TaskFile, RunDir, list[str], list[TaskData]]:
    """Parse the tasks, check the run folder against them, build every task's data; a new run
    writes config.json, spec.yaml and vocabulary.json. Returns (tasks, run, vocabulary, task data)."""
    tasks = parse_tasks(tasks_path)
    data_path = data or tasks.data
    if not data_path:
        raise MdrecError("no data: the tasks file has no 'data' field and --data was not given", path=tasks.path,
                         hint="pass --data DIR (a prepared folder, e.g. from `mdrec data synth --preset transfer`)")
    spec = load_spec(spec_path)
    config = TrainConfig(model=MODEL, train=str(Path(data_path).resolve()), seed=tasks.seed,
                         hyperparameters={"tasks_file": str(Path(tasks_path).resolve()), **tasks.as_config()})
    run = RunDir(out)
    fingerprints = run.prepare(config, {"train": resolve_train(data_path), "spec": spec_path, "tasks": tasks_path},
                               overwrite=overwrite)
    tf_keras.utils.set_random_seed(tasks.seed)  # before the models are built: their initial weights
    log(f"lifelong: {len(tasks.tasks)} tasks, encoder {tasks.encoder}")
    vocabulary, task_data = build_task_data(tasks, spec, data_path, log=log)
    if not run.exists():
        run.write_config(config, spec, fingerprints)
        atomic_write_json(run.path / "vocabulary.json",
                          {"items": vocabulary, **{d.task.name: d.classes for d in task_data[1:]}})
    return tasks, run, vocabulary, task_data


def _resume(run: RunDir, checkpoint: tf.train.Checkpoint, task_data: list[TaskData], log: Printer) -> dict:
    """progress.json's record (a fresh one for a new run), the models restored to its last task."""
    path = run.path / PROGRESS
    progress = json.loads(path.read_text()) if path.is_file() else {
        "done": 0, "matrix": {m: {} for m in ("conure", "sequential")}, "right_after": {m: {} for m in METHODS},
        "losses": {}, "seconds": {}, "sanity": {}}
    if progress["done"]:
        checkpoint.read(str(run.path / "state" / f"after_{progress['done']}" / "ckpt")).expect_partial()
        log(f"resumed after task {progress['done']} ({task_data[progress['done'] - 1].task.name}); "
            "finished tasks are not retrained")
    return progress


def _learn_task(world: World, tasks: TaskFile, task_data: list[TaskData], data: TaskData, progress: dict,
                log: Printer) -> None:
    """Task ``data.task`` learned by every method; its losses, scores, sanity row and wall times go
    into ``progress`` (Conure's and sequential fine-tuning's rows score every task learned so far)."""
    t, name = data.task.index, data.task.name
    log(f"task {t} {name} ({data.task.kind}, prune {data.task.prune}):")
    seconds = {}
    clock = time.perf_counter()
    learned = learn_conure(world.conure, data, tasks, world.rng, log)
    seconds["conure"] = time.perf_counter() - clock
    progress["losses"][name] = {"conure": learned["losses"], "conure_retrain": learned["retrain_losses"]}
    conure_row = {str(i): evaluate(world.conure, d, world.conure.predict_masks(i))
                  for i, d in ((d.task.index, d) for d in task_data[:t])}
    progress["matrix"]["conure"][str(t)] = conure_row
    progress["right_after"]["conure"][str(t)] = conure_row[str(t)]
    if tasks.baselines:
        _learn_baselines(world, tasks, task_data, data, learned, progress, seconds)
    progress["sanity"][str(t)] = sanity(data)
    progress["seconds"][str(t)] = seconds
    log(_task_line(data.task, progress, tasks.baselines, seconds))


def _learn_baselines(world: World, tasks: TaskFile, task_data: list[TaskData], data: TaskData, learned: dict,
                     progress: dict, seconds: dict[str, float]) -> None:
    """Task ``data.task`` for sequential fine-tuning, one model per task and the adapters."""
    t, name = data.task.index, data.task.name
    clock = time.perf_counter()
    seq = world.sequential
    if t == 1:
        # Task 1's plain model is Conure's task-1 encoder before pruning: the shared base
        # of one-model-per-task and the adapters, and sequential fine-tuning's start.
        for target in (world.per_task["1"], seq):
            for variable, value in zip(base_weights(target), learned["before_prune"], strict=True):
                variable.assign(value)
            target.head(1).set_weights(learned["head_before_prune"])
        seconds["sequential"] = seconds["per_task"] = 0.0
    else:
        progress["losses"][name]["sequential"] = learn_plain(
            seq, data, seq.encoder.trainable_weights + seq.head(t).trainable_weights, tasks, world.rng)
        seconds["sequential"] = time.perf_counter() - clock
        # One model per task trains its whole copy of task 1's encoder; adapters only the patches.
        for method, model, encoder_weights in (
                ("per_task", world.per_task[str(t)], lambda m: m.encoder.trainable_weights),
                ("adapters", world.adapters[str(t)], lambda m: m.encoder.adapter_weights)):
            clock = time.perf_counter()
            copy_encoder(world.per_task["1"], model)
            progress["losses"][name][method] = learn_plain(
                model, data, encoder_weights(model) + model.head(t).trainable_weights, tasks, world.rng)
            seconds[method] = time.perf_counter() - clock
    seq_row = {str(d.task.index): evaluate(seq, d) for d in task_data[:t]}
    after = progress["right_after"]
    progress["matrix"]["sequential"][str(t)] = seq_row
    after["sequential"][str(t)] = seq_row[str(t)]
    after["per_task"][str(t)] = evaluate(world.per_task[str(t)], data)
    after["adapters"][str(t)] = after["per_task"]["1"] if t == 1 else evaluate(world.adapters[str(t)], data)


def _task_line(task: Task, progress: dict, baselines: bool, seconds: dict[str, float]) -> str:
    """The printed line of a learned task: its metric per method, the sanity row, the wall time."""
    t, metric = str(task.index), task.metric
    after = progress["right_after"]
    line = f"  {metric}: conure {after['conure'][t][metric]:.4f}"
    if baselines:
        line += (f", sequential {after['sequential'][t][metric]:.4f}, one-per-task "
                 f"{after['per_task'][t][metric]:.4f}, adapters {after['adapters'][t][metric]:.4f}")
    sanity_name, sanity_values = progress["sanity"][t]
    return line + f"; {sanity_name} {sanity_values[metric]:.4f}  ({sum(seconds.values()):.1f}s)"


def _record_task(run: RunDir, checkpoint: tf.train.Checkpoint, board: Board, task_data: list[TaskData],
                 progress: dict, t: int) -> None:
    """Save the models after task ``t`` and then progress.json (so the record never names a state
    that is not on disk), add the TensorBoard points, then drop the earlier states."""
    state = run.path / "state" / f"after_{t}"
    with atomic_directory(state) as tmp:
        checkpoint.write(str(tmp / "ckpt"))
    progress["done"] = t
    atomic_write_json(run.path / PROGRESS, progress)
    board_points(board, t, task_data, progress)
    for old in (run.path / "state").glob("after_*"):
        if old.name != state.name:
            shutil.rmtree(old, ignore_errors=True)


def board_points(board: Board, t: int, task_data: list[TaskData], progress: dict) -> None:
    """TensorBoard points once task ``t`` is learned, one writer per method: the task's training loss
    per epoch ("loss/<task>", "retrain_loss/<task>"; step = epoch) and every task learned so far
    scored now ("<metric>/<task>"; step = t, so each task's curve shows what later tasks did to it)."""
    name = task_data[t - 1].task.name
    for method, losses in progress["losses"][name].items():
        writer, tag = ("conure", "retrain_loss") if method == "conure_retrain" else (method, "loss")
        for epoch, loss in enumerate(losses, 1):
            board.scalars(writer, epoch, {f"{tag}/{name}": loss})
    names = {str(d.task.index): d.task.name for d in task_data}
    scored = {m: rows[str(t)] for m, rows in progress["matrix"].items() if str(t) in rows}
    scored.update({m: {str(t): rows[str(t)]} for m, rows in progress["right_after"].items()
                   if m not in scored and str(t) in rows})
    for method, row in scored.items():
        board.scalars(method, t, {f"{metric}/{names[task]}": value for task, values in row.items()
                                  for metric, value in values.items()})
    board.flush()


def resolve_train(data) -> Path:
    from mdrec.pretraining.data import resolve_source

    return resolve_source(data)


def parameter_counts(world: World, tasks: TaskFile) -> dict:
    c = world.conure
    heads = count([v for h in c.heads.values() for v in h.trainable_weights])
    encoder = count(c.encoder.trainable_weights)
    out = {"encoder": encoder, "heads": heads, "conure": encoder + heads}
    if tasks.baselines:
        out["per_task"] = sum(count(m.encoder.trainable_weights) + count(m.heads[k].trainable_weights)
                              for k, m in world.per_task.items())
        out["sequential"] = encoder + heads
        out["adapters"] = encoder + heads + sum(count(m.encoder.adapter_weights) for m in world.adapters.values())
    return out


def final_metrics(world: World, tasks: TaskFile, task_data: list[TaskData], progress: dict) -> LifelongMetrics:
    last = str(len(task_data))
    rows = []
    for d in task_data:
        t, metric = str(d.task.index), d.task.metric
        row = {"task": int(t), "name": d.task.name, "kind": d.task.kind, "metric": metric, "prune": d.task.prune,
               "sanity": progress["sanity"][t][0], "sanity_value": progress["sanity"][t][1][metric]}
        for method in ("conure", "sequential"):
            if method == "sequential" and not tasks.baselines:
                continue
            after = progress["right_after"][method][t][metric]
            final = progress["matrix"][method][last][t][metric]
            row[f"{method}_after_it"], row[f"{method}_after_all"] = after, final
            row[f"{method}_change"] = final - after
        if tasks.baselines:
            for method in ("per_task", "adapters"):
                row[method] = progress["right_after"][method][t][metric]  # unchanged by later tasks
        rows.append(row)
    counts = parameter_counts(world, tasks)
    return {"model": MODEL, "tasks": rows, "parameters": counts,
            "ownership": ownership_summary(world.conure.owner_arrays(), len(task_data)),
            "matrix": progress["matrix"], "right_after": progress["right_after"], "losses": progress["losses"],
            "seconds": progress["seconds"], "sanity": progress["sanity"]}
