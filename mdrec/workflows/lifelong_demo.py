"""The demo's lifelong step: three short Conure tasks on the synthetic transfer log and the
forgetting table.

Tasks, in order, all reading the user's clicks on the big line (``main``):
  1 next_item  next-click pretraining on ``main`` (recall@10 of the held-out last click)
  2 mini       the items the user clicks on the ``mini`` line (recall@10 of held-out users)
  3 age        the user's age group (accuracy, macro-F1 beside it)
The same run trains sequential fine-tuning, one model per task and PeterRec adapters.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

# quick: seconds on the quick transfer log (the test suite runs it). full: about a minute on one core
# on the full transfer preset (3,000 users); the later tasks train at a higher rate, which is what
# makes sequential fine-tuning forget (and Conure not).
SETTINGS = {
    True: {"encoder": {"architecture": "nextitnet", "dim": 16, "layers": 1, "max_length": 10, "dropout": 0.0,
                       "pooling": "mean"},
           "defaults": {"epochs": 1, "retrain_epochs": 0, "batch_size": 256, "learning_rate": 0.01, "repeats": 1},
           "later": {}, "max_eval_users": 300},
    False: {"encoder": {"architecture": "nextitnet", "dim": 32, "layers": 2, "max_length": 20, "dropout": 0.3,
                        "pooling": "mean"},
            "defaults": {"epochs": 6, "retrain_epochs": 1, "batch_size": 64, "learning_rate": 0.003, "repeats": 2},
            "later": {"epochs": 4, "learning_rate": 0.005}, "max_eval_users": 3000},
}
SOURCE, TARGET = "main", "mini"  # the transfer preset's big line and its largest small line


def demo_tasks(*, quick: bool) -> dict:
    """The step's tasks file as a mapping: next item on the big line, a small line's items, age."""
    settings = SETTINGS[bool(quick)]
    later = settings["later"]
    return {"encoder": settings["encoder"], "defaults": settings["defaults"], "negatives": 0, "seed": 0,
            "max_eval_users": settings["max_eval_users"],
            "tasks": [{"name": "next_item", "kind": "next_item", "line": SOURCE, "prune": 0.7},
                      {"name": TARGET, "kind": "line_items", "line": TARGET, **later},
                      {"name": "age", "kind": "profile", "target": "age_group", "prune": 0.0, **later}]}


def lifelong_step(spec_path: str | Path, data_dir: str | Path, out: str | Path, *, quick: bool,
                  log: Callable[[str], None], header: str) -> pd.DataFrame:
    """Run the three tasks on ``data_dir`` (a folder written by ``synthetic.write(..., line_files=True)``
    from ``synthetic.preset("transfer")``) in ``out/lifelong`` (started afresh), print ``header``,
    the forgetting table and the parameter counts through ``log``, and return the forgetting table
    (one row per task and metric; see :func:`mdrec.workflows.lifelong_report.forgetting_table`)."""
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.lifelong import lifelong_run
    from mdrec.workflows.lifelong_report import forgetting_table, parameter_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks_path = out / "lifelong_tasks.yaml"
    tasks = demo_tasks(quick=quick)
    tasks_path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    run = out / "lifelong"
    shutil.rmtree(run, ignore_errors=True)  # a demo run starts afresh (a finished run would not retrain)
    log(header)
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)  # every phase is its own tf.function: TF's retracing warnings are noise here
    try:
        metrics = lifelong_run(spec_path, tasks_path, run, data=data_dir, log=lambda *_: None)
    finally:
        logger.setLevel(level)
    table = forgetting_table(metrics)
    log("each task's test metric right after it was learned and after all tasks (Δ: after all - after it); "
        "Conure trains each task in the weights earlier tasks left free and freezes them, sequential "
        "fine-tuning (seq-FT) trains the whole encoder on every task:")
    log(format_table(table))
    counts = parameter_table(metrics["parameters"])
    log("\nparameters (encoder + heads):")
    log(format_table(counts, floatfmt=".2f"))
    return table
