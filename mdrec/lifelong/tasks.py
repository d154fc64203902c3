"""The tasks file of ``mdrec lifelong`` and each task's data.

    # TASKS.yaml
    data: ../data/synthetic          # optional (else --data); relative to this file
    encoder: {architecture: nextitnet, dim: 32, layers: 2, max_length: 20, dropout: 0.1, pooling: last}
    defaults: {epochs: 4, retrain_epochs: 1, batch_size: 128, learning_rate: 0.003, repeats: 1}
    tasks:
      - {name: next_item, kind: next_item, line: main, prune: 0.7}   # task 1: pretraining
      - {name: mini, kind: line_items, line: mini}                     # prune defaults to 0.5
      - {name: age, kind: profile, target: age_group, prune: 0.0}     # the last may keep all

Kinds:
  next_item   (task 1 only) autoregressive next-item pretraining on ``line``'s click sequences
              (all lines when the spec has no domain column); metric: held-out last item,
              recall@10 (= hit rate) and NDCG@10 against the user's history, with popularity.
  line_items  the user's clicked items of target line ``line`` from the user vector (softmax over
              that line's clicked items); users split 80/20; metric recall@10 / NDCG@10 of the
              held-out users' clicks, with popularity.
  profile     user attribute ``target`` (a user column of the spec) from the user vector; users
              split 80/20; metric accuracy (macro-F1 beside it), with the majority class.
Every task's input is the same: the user's click sequence on task 1's line (last max_length).

``repeats`` (per task, default 1): each training row is shown that many times per epoch; the
first copy is the row's last ``max_length`` items, every other copy a window of the row's whole
history ending at a random point, drawn afresh each epoch. One row per user gives few steps per
epoch, and a long history (MovieLens-1M: median 54 positive ratings) is otherwise read only at
its end.
Evaluation always reads the last ``max_length`` items.

``encoder.pooling``: how later tasks read the sequence: ``last`` (the last position's state, as
task 1 predicts the next item) or ``mean`` (the mean of all positions' states; a profile is a
property of the whole history). Task 1 always uses the last state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mdrec.encoding import read_utf8
from mdrec.errors import MdrecError

KINDS = ("next_item", "line_items", "profile")
METRIC = {"next_item": "recall@10", "line_items": "recall@10", "profile": "accuracy"}
ENCODER_DEFAULTS: dict[str, Any] = {"architecture": "nextitnet", "dim": 32, "layers": 2, "heads": 2,
                                    "max_length": 20, "dropout": 0.1, "pooling": "last"}
POOLINGS = ("last", "mean")
TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 4, "retrain_epochs": 1, "batch_size": 128, "learning_rate": 3e-3,
                                  "repeats": 1}
FIRST_PRUNE, LATER_PRUNE = 0.7, 0.5
TASK_FIELDS = {"name", "kind", "line", "target", "prune", *TRAIN_DEFAULTS}
TOP_FIELDS = {"data", "encoder", "defaults", "tasks", "seed", "negatives", "max_eval_users", "baselines",
              "adapter_bottleneck"}


@dataclass
class Task:
    index: int  # 1-based
    name: str
    kind: str
    line: str | None
    target: str | None
    prune: float
    epochs: int
    retrain_epochs: int
    batch_size: int
    learning_rate: float
    repeats: int = 1

    @property
    def metric(self) -> str:
        return METRIC[self.kind]


@dataclass
class TaskFile:
    path: str
    data: str | None
    encoder: dict[str, Any]
    tasks: list[Task]
    seed: int = 0
    negatives: int = 0
    max_eval_users: int = 2000
    baselines: bool = True
    adapter_bottleneck: int = 8

    def as_config(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "seed": self.seed, "negatives": self.negatives,
                "max_eval_users": self.max_eval_users, "baselines": self.baselines,
                "adapter_bottleneck": self.adapter_bottleneck,
                "tasks": [{k: v for k, v in t.__dict__.items()} for t in self.tasks]}


def _fail(path: str, where: str, message: str, hint: str | None = None):
    raise MdrecError(f"{where}: {message}", path=path, hint=hint)


def _number(path, where, key, value, kind, low=None, high=None, high_open=False):
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if kind is int and number != value:
            raise ValueError
    except (TypeError, ValueError):
        _fail(path, where, f"field '{key}' must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if low is not None and number < low:
        _fail(path, where, f"field '{key}' must be >= {low}, got {value!r}")
    if high is not None and (number >= high if high_open else number > high):
        _fail(path, where, f"field '{key}' must be {'<' if high_open else '<='} {high}, got {value!r}",
              hint="prune is the fraction of the task's trainable weights freed for later tasks (0 keeps all)")
    return number


def parse_tasks(path: str | Path) -> TaskFile:
    """Read and check a tasks file; every mistake is one MdrecError naming the task and the field."""
    path = Path(path)
    if not path.is_file():
        raise MdrecError("no such tasks file", path=str(path), hint="pass --tasks TASKS.yaml (see "
                         "task_files/lifelong-synthetic.yaml)")
    try:
        raw = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as error:
        raise MdrecError(f"not valid YAML ({error})", path=str(path)) from None
    p = str(path)
    if not isinstance(raw, dict):
        _fail(p, "top level", "expected a mapping with a 'tasks' list")
    unknown = sorted(set(raw) - TOP_FIELDS)
    if unknown:
        _fail(p, "top level", f"unknown field(s) {', '.join(unknown)}", hint=f"fields: {', '.join(sorted(TOP_FIELDS))}")
    encoder = dict(ENCODER_DEFAULTS)
    given = raw.get("encoder") or {}
    if not isinstance(given, dict) or set(given) - set(ENCODER_DEFAULTS):
        _fail(p, "encoder", f"expected a mapping of {', '.join(ENCODER_DEFAULTS)}",
              hint=f"unknown: {', '.join(sorted(set(given) - set(ENCODER_DEFAULTS)))}" if isinstance(given, dict)
              else None)
    encoder.update(given)
    if encoder["architecture"] not in ("nextitnet", "transformer"):
        _fail(p, "encoder", f"field 'architecture' must be nextitnet or transformer, got {encoder['architecture']!r}")
    if encoder["pooling"] not in POOLINGS:
        _fail(p, "encoder", f"field 'pooling' must be one of {', '.join(POOLINGS)}, got {encoder['pooling']!r}")
    for key in ("dim", "layers", "heads", "max_length"):
        encoder[key] = _number(p, "encoder", key, encoder[key], int, 1)
    encoder["dropout"] = _number(p, "encoder", "dropout", encoder["dropout"], float, 0.0, 1.0, True)
    if encoder["architecture"] == "transformer" and encoder["dim"] % encoder["heads"]:
        _fail(p, "encoder", f"field 'dim' ({encoder['dim']}) must be divisible by 'heads' ({encoder['heads']})")
    defaults = dict(TRAIN_DEFAULTS)
    given = raw.get("defaults") or {}
    if not isinstance(given, dict) or set(given) - set(TRAIN_DEFAULTS) - {"prune"}:
        _fail(p, "defaults", f"expected a mapping of {', '.join(TRAIN_DEFAULTS)}")
    defaults.update(given)
    items = raw.get("tasks")
    if not isinstance(items, list) or not items:
        _fail(p, "top level", "field 'tasks' must be a non-empty list of tasks",
              hint="e.g. tasks: [{name: next_item, kind: next_item, line: main}]")
    tasks, names = [], set()
    for i, item in enumerate(items, start=1):
        label = f"task {i}"
        if not isinstance(item, dict):
            _fail(p, label, f"expected a mapping (name, kind, ...), got {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            _fail(p, label, f"field 'name' must be a non-empty identifier (letters, digits, _ or -), got {name!r}")
        label = f"task {i} '{name}'"
        if name in names:
            _fail(p, label, "field 'name' repeats an earlier task's name", hint="give every task its own name")
        names.add(name)
        unknown = sorted(set(item) - TASK_FIELDS)
        if unknown:
            _fail(p, label, f"unknown field(s) {', '.join(unknown)}", hint=f"fields: {', '.join(sorted(TASK_FIELDS))}")
        kind = item.get("kind")
        if kind not in KINDS:
            _fail(p, label, f"field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        if i == 1 and kind != "next_item":
            _fail(p, label, f"field 'kind': task 1 is the pretraining task and must be next_item, got {kind!r}")
        if i > 1 and kind == "next_item":
            _fail(p, label, "field 'kind': next_item (pretraining) is task 1 only",
                  hint="later tasks are line_items or profile")
        if kind == "line_items" and not item.get("line"):
            _fail(p, label, "field 'line' is required for a line_items task (the target business line)")
        if kind == "profile" and not item.get("target"):
            _fail(p, label, "field 'target' is required for a profile task (a user column, e.g. age_group)")
        for key in ("line", "target"):
            if item.get(key) is not None and not isinstance(item[key], str):
                _fail(p, label, f"field '{key}' must be a string, got {item[key]!r}")
        prune = item.get("prune", defaults.get("prune", FIRST_PRUNE if i == 1 else LATER_PRUNE))
        prune = _number(p, label, "prune", prune, float, 0.0, 1.0, True)
        values = {k: item.get(k, defaults[k]) for k in TRAIN_DEFAULTS}
        tasks.append(Task(index=i, name=name, kind=kind, line=item.get("line"), target=item.get("target"),
                          prune=prune, epochs=_number(p, label, "epochs", values["epochs"], int, 1),
                          retrain_epochs=_number(p, label, "retrain_epochs", values["retrain_epochs"], int, 0),
                          batch_size=_number(p, label, "batch_size", values["batch_size"], int, 1),
                          learning_rate=_number(p, label, "learning_rate", values["learning_rate"], float, 0.0),
                          repeats=_number(p, label, "repeats", values["repeats"], int, 1)))
        if tasks[-1].learning_rate <= 0:
            _fail(p, label, "field 'learning_rate' must be positive")
    data = raw.get("data")
    if data is not None:
        data = str((path.parent / str(data)) if not Path(str(data)).is_absolute() else Path(str(data)))
    out = TaskFile(path=p, data=data, encoder=encoder, tasks=tasks)
    out.seed = _number(p, "top level", "seed", raw.get("seed", 0), int, 0)
    out.negatives = _number(p, "top level", "negatives", raw.get("negatives", 0), int, 0)
    out.max_eval_users = _number(p, "top level", "max_eval_users", raw.get("max_eval_users", 2000), int, 1)
    out.adapter_bottleneck = _number(p, "top level", "adapter_bottleneck", raw.get("adapter_bottleneck", 8), int, 1)
    out.baselines = bool(raw.get("baselines", True))
    return out


# ---- data -----------------------------------------------------------------------------------------

@dataclass
class TaskData:
    """One task's examples. ``x`` the user input sequences (strings [N, L]), ``y`` int labels
    (next_item: unused zeros); eval: ``eval_x`` and per-kind targets."""

    task: Task
    x: np.ndarray
    y: np.ndarray
    eval_x: np.ndarray
    eval_targets: list  # next_item: target vocabulary index; line_items: clicked index arrays; profile: class
    excluded: list = field(default_factory=list)  # next_item: history indices removed from the ranking
    classes: list[str] = field(default_factory=list)  # line_items: the line's items; profile: class values
    popularity: np.ndarray | None = None  # counts over training users (line_items / next_item)
    histories: list = field(default_factory=list)  # per training row (as x): the whole input sequence
    majority: int = 0
    info: dict = field(default_factory=dict)

    @property
    def outputs(self) -> int:
        return len(self.classes)


def _seq_matrix(sequences, max_length: int) -> np.ndarray:
    from mdrec.pretraining.data import sequence_matrix

    return sequence_matrix(sequences, max_length)


def _split(n: int, seed: int, salt: int, test: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, salt]).permutation(n)
    n_test = max(1, int(round(test * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def full_log(data: str | Path) -> Path:
    """The prepared folder's whole log (log.parquet) when there is one, else its train split."""
    from mdrec.pretraining.data import resolve_source

    data = Path(data)
    if data.is_dir() and (data / "log.parquet").is_file():
        return data / "log.parquet"
    return resolve_source(data)


def build_task_data(tasks: TaskFile, spec, data: str | Path, log=print) -> tuple[list[str], list[TaskData]]:
    """(item vocabulary of task 1's line, one TaskData per task)."""
    from mdrec.pretraining.data import item_vocabulary, load_source
    from mdrec.transfer.profile import user_labels

    max_length = tasks.encoder["max_length"]
    first = tasks.tasks[0]
    where = f"task 1 '{first.name}'"
    domains = [first.line] if first.line and spec.domain.column else None
    try:
        source = load_source(data, spec, domains=domains)
    except MdrecError as error:
        raise MdrecError(f"{where}: field 'line': {error}", path=tasks.path) from None
    sequences = source.sequences
    vocabulary = item_vocabulary(sequences)
    index = {item: i for i, item in enumerate(vocabulary)}
    users = sorted(sequences)
    out = []
    # Task 1: train on every sequence without its last item; evaluate the held-out last item.
    train_seqs = [sequences[u][:-1] if len(sequences[u]) >= 2 else sequences[u] for u in users]
    queries = [i for i, u in enumerate(users) if len(sequences[u]) >= 2 and sequences[u][-1] not in
               set(sequences[u][:-1])]
    rng = np.random.default_rng([tasks.seed, 1])
    if len(queries) > tasks.max_eval_users:
        queries = sorted(rng.choice(queries, tasks.max_eval_users, replace=False).tolist())
    popularity = np.bincount([index[i] for s in train_seqs for i in s], minlength=len(vocabulary))
    out.append(TaskData(task=first, x=_seq_matrix(train_seqs, max_length),
                        y=np.zeros(len(users), np.int64), histories=train_seqs,
                        eval_x=_seq_matrix([train_seqs[i] for i in queries], max_length),
                        eval_targets=[index[sequences[users[i]][-1]] for i in queries],
                        excluded=[np.asarray(sorted({index[v] for v in train_seqs[i]}), np.int64) for i in queries],
                        classes=vocabulary, popularity=popularity,
                        info={"users": len(users), "items": len(vocabulary), "eval_users": len(queries),
                              "line": first.line or "all"}))
    source_input = {u: sequences[u] for u in users}  # downstream tasks read the whole source sequence
    log_path = full_log(data)

    def inputs(user_list):
        return _seq_matrix([source_input.get(str(u), []) for u in user_list], max_length)

    def histories(user_list):
        return [source_input.get(str(u), []) for u in user_list]

    for task in tasks.tasks[1:]:
        where = f"task {task.index} '{task.name}'"
        if task.kind == "line_items":
            if not spec.domain.column:
                raise MdrecError(f"{where}: field 'line': spec '{spec.name}' has no domain column, so the log "
                                 "has one line", path=tasks.path, hint="use a profile task, or a multi-line spec")
            try:
                target = load_source(log_path, spec, domains=[task.line], prepared=False)
            except MdrecError as error:
                raise MdrecError(f"{where}: field 'line': {error}", path=tasks.path) from None
            t_users = sorted(target.sequences)
            items = item_vocabulary(target.sequences)
            t_index = {item: i for i, item in enumerate(items)}
            clicked = [np.asarray(sorted({t_index[i] for i in target.sequences[u]}), np.int64) for u in t_users]
            train, test = _split(len(t_users), tasks.seed, task.index)
            x = [u for i in train for u in [t_users[i]] * len(clicked[i])]
            y = np.concatenate([clicked[i] for i in train]) if len(train) else np.zeros(0, np.int64)
            popularity = np.bincount(y, minlength=len(items))
            out.append(TaskData(task=task, x=inputs(x), y=y.astype(np.int64), histories=histories(x),
                                eval_x=inputs([t_users[i] for i in test]), eval_targets=[clicked[i] for i in test],
                                classes=items, popularity=popularity,
                                info={"users": len(t_users), "items": len(items), "train_users": len(train),
                                      "test_users": len(test), "train_examples": int(len(y)),
                                      "with_source_history": int(sum(u in source_input for u in t_users)),
                                      "log": str(log_path)}))
        else:
            try:
                labels = user_labels(str(log_path), spec.source, task.target)
            except MdrecError as error:
                raise MdrecError(f"{where}: field 'target': {error}", path=tasks.path) from None
            labels = labels[labels.index.astype(str).isin(source_input)] if len(source_input) else labels
            classes = sorted(pd.unique(labels.astype(str)))
            if len(classes) < 2:
                raise MdrecError(f"{where}: field 'target': column '{task.target}' has fewer than two values among "
                                 "the source users", path=tasks.path, hint="pick another user column")
            p_users = labels.index.astype(str).to_numpy()
            y = labels.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
            train, test = _split(len(p_users), tasks.seed, task.index)
            out.append(TaskData(task=task, x=inputs(p_users[train]), y=y[train], histories=histories(p_users[train]),
                                eval_x=inputs(p_users[test]),
                                eval_targets=list(y[test]), classes=classes,
                                majority=int(np.bincount(y[train], minlength=len(classes)).argmax()),
                                info={"users": len(p_users), "classes": len(classes), "train_users": len(train),
                                      "test_users": len(test), "log": str(log_path)}))
    for item in out:
        log(f"  task {item.task.index} {item.task.name} ({item.task.kind}): " +
            ", ".join(f"{k} {v}" for k, v in item.info.items() if k not in ("log",)))
    return vocabulary, out


def training_rows(data: TaskData, repeats: int, max_length: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """One epoch's (x [N * repeats, max_length] strings, y [N * repeats]): the rows as they are, then
    ``repeats - 1`` copies whose windows end at a random point of each row's whole history (a row
    with at most ``max_length`` items is the same in every copy)."""
    if repeats <= 1 or not data.histories:
        return data.x, data.y
    lengths = np.asarray([len(h) for h in data.histories])
    windows = []
    for _ in range(repeats - 1):
        ends = rng.integers(np.minimum(lengths, max_length), lengths + 1)
        windows += [h[max(0, e - max_length):e] for h, e in zip(data.histories, ends)]
    x = np.concatenate([data.x, _seq_matrix(windows, max_length)])
    return x, np.concatenate([data.y] * repeats)
