"""``mdrec transfer``: a pretrained user encoder carried into a target line's model.

ctr and retrieval train an ordinary mdrec run (any CTR model but 'separate', or two_tower) whose
feature encoder also reads the pretrained user vector (``pretrained`` / ``transfer_mode``
hyperparameters, so evaluate, compare, ab and export treat it like any run); profile trains
:mod:`mdrec.transfer.profile`'s user-attribute classifier. A ctr run with a test log also gets
RUN/report/ (report.md, report.html): its test AUC by the user's history, beside the sanity rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json
from mdrec.models.registry import model_family
from mdrec.training.schedule import TRANSFER
from mdrec.transfer.settings import ADAPTER_DIM
from mdrec.transfer.user_feature import MODES

TASKS = ("ctr", "retrieval", "profile")


@dataclass
class TransferResult:
    """What :func:`transfer_run` returns."""

    metrics: dict[str, Any]      # as written to out/metrics.json (a train_run's metrics for ctr and retrieval)
    # profile: the held-out users' table (model and majority-class rows); ctr with a test log: test
    # AUC by the user's history (model and sanity rows); otherwise None.
    table: pd.DataFrame | None = None


def transfer_run(pretrained: str | Path, spec_path: str | Path, out: str | Path, *, task: str, mode: str,
                 train: str, valid: str | None = None, test: str | None = None, model: str | None = None,
                 target: str | None = None, adapter_dim: int = ADAPTER_DIM,
                 epochs: int = TRANSFER["epochs"], batch_size: int = TRANSFER["batch_size"],
                 learning_rate: float = TRANSFER["learning_rate"], patience: int = TRANSFER["patience"],
                 seed: int = TRANSFER["seed"],
                 hyperparameters: dict | None = None, warm_start: str | None = None,
                 overwrite: bool = False, sanity_rows: bool = True, log: Callable[[str], None] = print) -> dict:
    """``sanity_rows``: passed to :func:`mdrec.workflows.train.train_run` (retrieval)."""
    from mdrec.workflows.pretrained import load_pretrained

    if task not in TASKS:
        raise MdrecError(f"unknown --task '{task}'", hint=f"use one of: {', '.join(TASKS)}")
    if mode not in MODES:
        raise MdrecError(f"unknown --mode '{mode}'", hint=f"use one of: {', '.join(MODES)}")
    load_pretrained(pretrained)  # a bad --from fails here, with its own message
    if task == "profile":
        from mdrec.workflows.profile import train_profile

        if not target:
            raise MdrecError("--task profile needs --target COLUMN (a user attribute, e.g. gender)")
        profile = train_profile(str(pretrained), str(spec_path), train, target, out, mode=mode,
                                adapter_dim=adapter_dim, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, patience=patience, seed=seed, overwrite=overwrite,
                                log=log, **(hyperparameters or {}))
        return TransferResult(profile.metrics, profile.table)
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    model = model or ("two_tower" if task == "retrieval" else "shared_bottom")
    family = model_family(model)
    if (family == "retrieval") != (task == "retrieval"):
        raise MdrecError(f"--model {model} is a {family} model and --task is {task}",
                         hint="use two_tower for --task retrieval and a CTR model (star, shared_bottom, "
                              "mmoe) for --task ctr")
    config = TrainConfig(model=model, train=train, valid=valid, test=test, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, patience=patience, seed=seed, warm_start=warm_start,
                         hyperparameters={**(hyperparameters or {}), "pretrained": str(pretrained),
                                          "transfer_mode": mode, "adapter_dim": adapter_dim})
    metrics: dict[str, Any] = dict(train_run(spec_path, config, out, overwrite=overwrite, log=log,
                                             sanity_rows=sanity_rows))
    if task == "ctr" and test:
        from mdrec.records import recorded_path
        from mdrec.workflows.transfer_report import write_slices_report
        from mdrec.workflows.transfer_slices import ctr_slices

        table = ctr_slices(out, test)
        metrics["slices"] = {"test": table.reset_index().to_dict(orient="records")}
        report = write_slices_report(table, Path(out) / "report",
                                     title=f"{model} + pretrained user encoder ({mode}): test by history")
        # relative to metrics.json (mdrec.records): the run folder may move as a whole
        metrics["report"] = {name: recorded_path(path, Path(out) / "metrics.json") for name, path in report.items()}
        atomic_write_json(Path(out) / "metrics.json", metrics)
        return TransferResult(metrics, table)
    return TransferResult(metrics)
