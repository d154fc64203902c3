"""The tasks file of ``mdrec lifelong``, read and checked (each task's examples:
:mod:`mdrec.lifelong.task_data`).

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    raw = _read_top_level(path)
    p = str(path)
    encoder = _encoder(p, raw.get("encoder") or {})
    defaults = _defaults(p, raw.get("defaults") or {})
    items = raw.get("tasks")
    if not isinstance(items, list) or not items:
        _fail(p, "top level", "field 'tasks' must be a non-empty list of tasks",
              hint="e.g. tasks: [{name: next_item, kind: next_item, line: main}]")
    tasks: list[Task] = []
    names: set[str] = set()
    for i, item in enumerate(items, start=1):
        tasks.append(_task(p, i, item, defaults, names))
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


def _read_top_level(path: Path) -> dict:
    """The file's YAML mapping, its keys all in TOP_FIELDS."""
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
    return raw


def _encoder(p: str, given: Any) -> dict[str, Any]:
    """ENCODER_DEFAULTS updated by the file's ``encoder`` mapping, checked."""
    if not isinstance(given, dict) or set(given) - set(ENCODER_DEFAULTS):
        _fail(p, "encoder", f"expected a mapping of {', '.join(ENCODER_DEFAULTS)}",
              hint=f"unknown: {', '.join(sorted(set(given) - set(ENCODER_DEFAULTS)))}" if isinstance(given, dict)
              else None)
    encoder = {**ENCODER_DEFAULTS, **given}
    if encoder["architecture"] not in ("nextitnet", "transformer"):
        _fail(p, "encoder", f"field 'architecture' must be nextitnet or transformer, got {encoder['architecture']!r}")
    if encoder["pooling"] not in POOLINGS:
        _fail(p, "encoder", f"field 'pooling' must be one of {', '.join(POOLINGS)}, got {encoder['pooling']!r}")
    for key in ("dim", "layers", "heads", "max_length"):
        encoder[key] = _number(p, "encoder", key, encoder[key], int, 1)
    encoder["dropout"] = _number(p, "encoder", "dropout", encoder["dropout"], float, 0.0, 1.0, True)
    if encoder["architecture"] == "transformer" and encoder["dim"] % encoder["heads"]:
        _fail(p, "encoder", f"field 'dim' ({encoder['dim']}) must be divisible by 'heads' ({encoder['heads']})")
    return encoder


def _defaults(p: str, given: Any) -> dict[str, Any]:
    """TRAIN_DEFAULTS updated by the file's ``defaults`` (which may also set ``prune``); checked per task."""
    if not isinstance(given, dict) or set(given) - set(TRAIN_DEFAULTS) - {"prune"}:
        _fail(p, "defaults", f"expected a mapping of {', '.join(TRAIN_DEFAULTS)}")
    return {**TRAIN_DEFAULTS, **given}


def _task(p: str, i: int, item: Any, defaults: dict[str, Any], names: set[str]) -> Task:
    """Task ``i`` (1-based) of the file's list; adds its name to ``names`` (the earlier tasks')."""
    if not isinstance(item, dict):
        _fail(p, f"task {i}", f"expected a mapping (name, kind, ...), got {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        _fail(p, f"task {i}", f"field 'name' must be a non-empty identifier (letters, digits, _ or -), got {name!r}")
    label = f"task {i} '{name}'"  # every later error names the task by number and name
    if name in names:
        _fail(p, label, "field 'name' repeats an earlier task's name", hint="give every task its own name")
    names.add(name)
    unknown = sorted(set(item) - TASK_FIELDS)
    if unknown:
        _fail(p, label, f"unknown field(s) {', '.join(unknown)}", hint=f"fields: {', '.join(sorted(TASK_FIELDS))}")
    kind = _task_kind(p, label, i, item)
    prune = item.get("prune", defaults.get("prune", FIRST_PRUNE if i == 1 else LATER_PRUNE))
    prune = _number(p, label, "prune", prune, float, 0.0, 1.0, True)
    values = {k: item.get(k, defaults[k]) for k in TRAIN_DEFAULTS}
    task = Task(index=i, name=name, kind=kind, line=item.get("line"), target=item.get("target"),
                prune=prune, epochs=_number(p, label, "epochs", values["epochs"], int, 1),
                retrain_epochs=_number(p, label, "retrain_epochs", values["retrain_epochs"], int, 0),
                batch_size=_number(p, label, "batch_size", values["batch_size"], int, 1),
                learning_rate=_number(p, label, "learning_rate", values["learning_rate"], float, 0.0),
                repeats=_number(p, label, "repeats", values["repeats"], int, 1))
    if task.learning_rate <= 0:
        _fail(p, label, "field 'learning_rate' must be positive")
    return task


def _task_kind(p: str, label: str, i: int, item: dict) -> str:
    """The task's kind, checked with the fields it needs (``line``, ``target``) and their types."""
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
    return kind
