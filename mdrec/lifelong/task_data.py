"""Each task's examples, read from the prepared data folder named by the tasks file (see
:mod:`mdrec.lifelong.tasks` for the file and the kinds).

Every task's input is the same: the user's click sequence on task 1's line, strings [N, max_length]
(the last ``max_length`` items, oldest first, "" padding).
  next_item   every source user's sequence without its last item (a one-item sequence whole);
              evaluated on the held-out last item of at most ``max_eval_users`` users (the
              history excluded from the ranking)
  line_items  one row per (training user, clicked item of the target line); users split 80/20
  profile     one row per source user with a value of the target column; users split 80/20
Later tasks read the line's clicks and the user columns from the folder's whole log (log.parquet
when there is one, else the train split).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.errors import MdrecError
from mdrec.lifelong.tasks import Task, TaskFile


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
    vocabulary, first, source_input = _source_task(tasks, spec, data)
    out = [first]
    log_path = full_log(data)
    for task in tasks.tasks[1:]:
        if task.kind == "line_items":
            out.append(_line_items_task(task, tasks, spec, log_path, source_input))
        else:
            out.append(_profile_task(task, tasks, spec, log_path, source_input))
    for item in out:
        log(f"  task {item.task.index} {item.task.name} ({item.task.kind}): " +
            ", ".join(f"{k} {v}" for k, v in item.info.items() if k not in ("log",)))
    return vocabulary, out


def _source_task(tasks: TaskFile, spec, data: str | Path) -> tuple[list[str], TaskData, dict[str, list[str]]]:
    """Task 1 (next_item) on its line's click sequences: (the item vocabulary, its TaskData, user ->
    whole sequence, the input of every later task)."""
    from mdrec.pretraining.data import item_vocabulary, load_source

    max_length = tasks.encoder["max_length"]
    first = tasks.tasks[0]
    domains = [first.line] if first.line and spec.domain.column else None
    try:
        source = load_source(data, spec, domains=domains)
    except MdrecError as error:
        raise MdrecError(f"task 1 '{first.name}': field 'line': {error}", path=tasks.path) from None
    sequences = source.sequences
    vocabulary = item_vocabulary(sequences)
    index = {item: i for i, item in enumerate(vocabulary)}
    users = sorted(sequences)
    # Train on every sequence without its last item; evaluate the held-out last item (one already in
    # the history is no query: the history is excluded from the ranking).
    train_seqs = [sequences[u][:-1] if len(sequences[u]) >= 2 else sequences[u] for u in users]
    queries = [i for i, u in enumerate(users) if len(sequences[u]) >= 2 and sequences[u][-1] not in
               set(sequences[u][:-1])]
    rng = np.random.default_rng([tasks.seed, 1])
    if len(queries) > tasks.max_eval_users:
        queries = sorted(rng.choice(queries, tasks.max_eval_users, replace=False).tolist())
    popularity = np.bincount([index[i] for s in train_seqs for i in s], minlength=len(vocabulary))
    task_data = TaskData(task=first, x=_seq_matrix(train_seqs, max_length),
                         y=np.zeros(len(users), np.int64), histories=train_seqs,
                         eval_x=_seq_matrix([train_seqs[i] for i in queries], max_length),
                         eval_targets=[index[sequences[users[i]][-1]] for i in queries],
                         excluded=[np.asarray(sorted({index[v] for v in train_seqs[i]}), np.int64) for i in queries],
                         classes=vocabulary, popularity=popularity,
                         info={"users": len(users), "items": len(vocabulary), "eval_users": len(queries),
                               "line": first.line or "all"})
    source_input = {u: sequences[u] for u in users}  # downstream tasks read the whole source sequence
    return vocabulary, task_data, source_input


def _histories(source_input: dict[str, list[str]], users) -> list[list[str]]:
    """Each user's whole source sequence ([] for a user without clicks on the source line)."""
    return [source_input.get(str(u), []) for u in users]


def _inputs(source_input: dict[str, list[str]], users, max_length: int) -> np.ndarray:
    """The users' input rows: strings [len(users), max_length], the last items of each history."""
    return _seq_matrix(_histories(source_input, users), max_length)


def _line_items_task(task: Task, tasks: TaskFile, spec, log_path: Path,
                     source_input: dict[str, list[str]]) -> TaskData:
    """The users' clicked items on line ``task.line``: one training row per (train user, item)."""
    from mdrec.pretraining.data import item_vocabulary, load_source

    where = f"task {task.index} '{task.name}'"
    if not spec.domain.column:
        raise MdrecError(f"{where}: field 'line': spec '{spec.name}' has no domain column, so the log "
                         "has one line", path=tasks.path, hint="use a profile task, or a multi-line spec")
    try:
        target = load_source(log_path, spec, domains=[task.line], prepared=False)
    except MdrecError as error:
        raise MdrecError(f"{where}: field 'line': {error}", path=tasks.path) from None
    max_length = tasks.encoder["max_length"]
    t_users = sorted(target.sequences)
    items = item_vocabulary(target.sequences)
    t_index = {item: i for i, item in enumerate(items)}
    clicked = [np.asarray(sorted({t_index[i] for i in target.sequences[u]}), np.int64) for u in t_users]
    train, test = _split(len(t_users), tasks.seed, task.index)
    x = [u for i in train for u in [t_users[i]] * len(clicked[i])]
    y = np.concatenate([clicked[i] for i in train]) if len(train) else np.zeros(0, np.int64)
    popularity = np.bincount(y, minlength=len(items))
    return TaskData(task=task, x=_inputs(source_input, x, max_length), y=y.astype(np.int64),
                    histories=_histories(source_input, x),
                    eval_x=_inputs(source_input, [t_users[i] for i in test], max_length),
                    eval_targets=[clicked[i] for i in test], classes=items, popularity=popularity,
                    info={"users": len(t_users), "items": len(items), "train_users": len(train),
                          "test_users": len(test), "train_examples": int(len(y)),
                          "with_source_history": int(sum(u in source_input for u in t_users)),
                          "log": str(log_path)})


def _profile_task(task: Task, tasks: TaskFile, spec, log_path: Path, source_input: dict[str, list[str]]) -> TaskData:
    """Each source user's value of user column ``task.target`` (their most frequent one), as a class."""
    from mdrec.transfer.profile import user_labels

    where = f"task {task.index} '{task.name}'"
    try:
        labels = user_labels(str(log_path), spec.source, task.target)
    except MdrecError as error:
        raise MdrecError(f"{where}: field 'target': {error}", path=tasks.path) from None
    labels = labels[labels.index.astype(str).isin(source_input)] if len(source_input) else labels
    classes = sorted(pd.unique(labels.astype(str)))
    if len(classes) < 2:
        raise MdrecError(f"{where}: field 'target': column '{task.target}' has fewer than two values among "
                         "the source users", path=tasks.path, hint="pick another user column")
    max_length = tasks.encoder["max_length"]
    p_users = labels.index.astype(str).to_numpy()
    y = labels.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    train, test = _split(len(p_users), tasks.seed, task.index)
    return TaskData(task=task, x=_inputs(source_input, p_users[train], max_length), y=y[train],
                    histories=_histories(source_input, p_users[train]),
                    eval_x=_inputs(source_input, p_users[test], max_length),
                    eval_targets=list(y[test]), classes=classes,
                    majority=int(np.bincount(y[train], minlength=len(classes)).argmax()),
                    info={"users": len(p_users), "classes": len(classes), "train_users": len(train),
                          "test_users": len(test), "log": str(log_path)})


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
