"""The defaults of ``mdrec pretrain`` (plain Python: the CLI shows them in --help without importing
TensorFlow). Measured on MovieLens-1M leave-last-out (README, "User-sequence encoder"): these are
the settings a new user gets without flags."""
from __future__ import annotations

from typing import Any

OBJECTIVES = ("autoregressive", "mlm", "contrastive")
ARCHITECTURES = ("transformer", "nextitnet")
POOLINGS = ("last", "mask", "cls", "mean")
BLOCKS = ("sasrec", "prenorm")
FULL_SOFTMAX_ITEMS = 50_000  # --negatives auto: the full softmax up to this many items, else sampled
SAMPLED_NEGATIVES = 2048

# Every hyperparameter of a pretraining run, with its default (written out in config.json);
# None: decided from other settings (see mdrec.workflows.pretrain_hyperparameters.resolve_hyperparameters).
DEFAULTS: dict[str, Any] = {
    "objective": "autoregressive", "architecture": None, "block": None, "pooling": None, "attributes": [], "domains": [],
    "dim": 64, "layers": 2, "heads": 1, "max_length": 200, "dropout": 0.1, "time_buckets": 0,
    "mask_rate": 0.2, "mask_last": 0.0, "attribute_weight": 1.0, "negatives": None, "exclude_seen": None,
    "temperature": 0.1, "next_item_weight": 1.0,
    "crop": 0.6, "mask": 0.3, "reorder": 0.6, "knn_neighbours": 50, "max_valid_users": 10000,
    "repeats": 1, "schedule": "constant", "warmup_epochs": 0.0, "loss_weighting": "token",
}
# Settings added after pretraining runs had been written, with the value those runs trained with: a
# run folder written before a setting existed resumes while the setting asks for that value, and
# refuses (naming it) once the setting's default moves on.
INTRODUCED_LATER: dict[str, Any] = {"schedule": "constant", "loss_weighting": "batch", "warmup_epochs": 0.0}
SCHEDULES = ("constant", "cosine")
# "batch": a batch's item loss is the mean over its targets; batches are grouped by window length,
# so a target in a batch of short windows weighs more than one in a batch of long ones. "token":
# every target of an epoch weighs the same (the batch's sum over the epoch's mean targets per batch).
LOSS_WEIGHTINGS = ("batch", "token")
# The training schedule.
TRAINING: dict[str, Any] = {"epochs": 60, "batch_size": 32, "learning_rate": 1e-3, "patience": 10, "seed": 0,
                            "checkpoint_every": 200}
# Where an objective's schedule differs. mlm scores a fifth of the positions a step and keeps climbing
# for longer (MovieLens-1M: best epochs 82-91 of 100 against 43-56 of 60); BERT4Rec's reproductions
# stop it after 20 epochs without a gain.
TRAINING_BY_OBJECTIVE: dict[str, dict[str, Any]] = {"mlm": {"epochs": 100, "patience": 20}}


def training_defaults(objective: str) -> dict[str, Any]:
    """The schedule a run of ``objective`` gets without flags."""
    return {**TRAINING, **TRAINING_BY_OBJECTIVE.get(objective, {})}


def default_text(key: str) -> str:
    """--help's account of a schedule default that depends on the objective, e.g. "60; 100 for
    --objective mlm"."""
    special = [f"{schedule[key]} for --objective {objective}" for objective, schedule in TRAINING_BY_OBJECTIVE.items()
               if key in schedule]
    return "; ".join([str(TRAINING[key]), *special])
