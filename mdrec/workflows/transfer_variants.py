"""Scratch vs transferred on one target line: every variant trained on the same split, scored by
the user's target-line history (the demo and bench/transfer.py).

Variants: "no transfer" (the target model alone), "ID warm start" (its tables start from a donor
run on the source line), and the four modes of the pretrained user encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable


from mdrec.workflows.transfer_report import SLICES

VARIANTS = ("no transfer", "ID warm start", "scratch", "frozen", "finetune", "adapter")


def run_variant(variant: str, *, spec_path: str | Path, target: dict[str, str], out: str | Path,
                pretrained: str | Path | None = None, donor: str | Path | None = None, model: str = "shared_bottom",
                seed: int = 0, hyperparameters: dict | None = None, epochs: int = 10, batch_size: int = 256,
                learning_rate: float = 2e-3, patience: int = 2,
                log: Callable[[str], None] = lambda *_: None) -> list[dict]:
    """Train one variant on ``target`` (train/valid/test paths); rows of test AUC by slice for
    the model and each sanity row (user+item mean, first-order logistic)."""
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run
    from mdrec.workflows.transfer import transfer_run
    from mdrec.workflows.transfer_slices import ctr_slices

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {VARIANTS}")
    training = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed)
    if variant in ("no transfer", "ID warm start"):
        if variant == "ID warm start" and donor is None:
            raise ValueError("ID warm start needs a donor run")
        config = TrainConfig(model=model, train=target["train"], valid=target["valid"], test=target["test"],
                             hyperparameters=dict(hyperparameters or {}),
                             warm_start=str(donor) if variant == "ID warm start" else None, **training)
        metrics = train_run(spec_path, config, out, overwrite=True, log=log)
        source_users = None
        if pretrained is not None:
            from mdrec.workflows.pretrained import load_pretrained

            source_users = {u for u, items in load_pretrained(pretrained).sequences.items() if len(items)}
        table = ctr_slices(out, target["test"], source_users)
    else:
        result = transfer_run(pretrained, spec_path, out, task="ctr", mode=variant, train=target["train"],
                              valid=target["valid"], test=target["test"], model=model,
                              hyperparameters=hyperparameters, overwrite=True, log=log, **training)
        metrics, table = result.metrics, result.table
    rows = []
    for scorer in table["model"].unique():
        name = variant if scorer == "model" else scorer
        part = table[table["model"] == scorer]
        row = {"variant": name, "seed": seed, **{s: float(part.loc[s, "auc"]) for s in SLICES if s in part.index},
               "rows": {s: int(part.loc[s, "rows"]) for s in SLICES if s in part.index}}
        if scorer == "model":
            row["trainable_share"] = metrics.get("transfer", {}).get("encoder_trainable_share")
        rows.append(row)
    return rows
