"""Each training workflow's default schedule, in one place: the workflows' signatures, TrainConfig
and the command line's flags all read these (so `--help` shows what a run will use).

Why they differ: `train` steps over impression rows (large batches); `transfer` trains on a small
target line (smaller batches see it more often); `compare-branches` trains one run per item encoder
and seed (few epochs keep the comparison affordable). Pretraining's schedule is
``mdrec.pretraining.settings.training_defaults(objective)`` (windows of user sequences, not rows;
mlm trains longer).
"""
from __future__ import annotations

from typing import Any

SCHEDULE_KEYS = ("epochs", "batch_size", "learning_rate", "patience", "seed")
SCHEDULE_TYPES: dict[str, type] = {"epochs": int, "batch_size": int, "learning_rate": float, "patience": int,
                                   "seed": int}

TRAIN: dict[str, Any] = {"model": "star", "epochs": 10, "batch_size": 1024, "learning_rate": 1e-3, "patience": 2,
                         "seed": 0, "checkpoint_every": 100}
TRANSFER: dict[str, Any] = {"epochs": 10, "batch_size": 512, "learning_rate": 1e-3, "patience": 2, "seed": 0}
BRANCHES: dict[str, Any] = {"epochs": 3, "batch_size": 1024, "learning_rate": 1e-3, "patience": 2}
