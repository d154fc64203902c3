"""``mdrec transfer --task profile``: train the profile head over a pretrained user encoder in a
run folder (:mod:`mdrec.transfer.profile` holds the model and its report)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tf_keras

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json
from mdrec.spec import load_spec
from mdrec.training.epochs import InMemoryEpochs
from mdrec.training.inference import restore_weights
from mdrec.training.loop import fit
from mdrec.training.run import RunDir, TrainConfig
from mdrec.transfer.profile import (USER, ProfileModel, profile_logits, profile_report, split_users,
                                    user_labels)
from mdrec.transfer.settings import ADAPTER_DIM
from mdrec.transfer.user_feature import PretrainedUser, trainable_share
from mdrec.workflows.pretrained import load_pretrained


@dataclass
class ProfileResult:
    """What :func:`train_profile` returns."""

    metrics: dict[str, Any]   # as written to out/metrics.json
    table: pd.DataFrame       # held-out users' accuracy and macro F1 per line, model and majority-class rows


def train_profile(pretrained: str, spec_path: str, data: str, target: str, out: str | Path, *,
                  mode: str = "frozen", adapter_dim: int = ADAPTER_DIM, hidden: Sequence[int] = (64,),
                  dropout: float = 0.1, epochs: int = 30, batch_size: int = 128, learning_rate: float = 3e-3,
                  patience: int = 3, seed: int = 0, overwrite: bool = False,
                  log: Callable[[str], None] = print) -> ProfileResult:
    """Train the profile head (and the encoder, as ``mode`` says) in run folder ``out``."""
    labels_by_user = user_labels(data, spec_path, target)
    classes = sorted(labels_by_user.unique())
    if len(classes) < 2:
        raise MdrecError(f"column '{target}' has a single value ({classes[0]}); nothing to predict",
                         path=str(data), hint="pick a column with two or more values")
    users = labels_by_user.index.to_numpy(dtype=object)
    index = {c: i for i, c in enumerate(classes)}
    y = labels_by_user.map(index).to_numpy(np.int64)
    parts = split_users(np.arange(len(users)), seed)
    config = TrainConfig(model="profile", train=str(Path(data).resolve()), epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, patience=patience, seed=seed,
                         hyperparameters={"pretrained": str(Path(pretrained).resolve()), "transfer_mode": mode,
                                          "adapter_dim": adapter_dim, "hidden": list(hidden), "dropout": dropout,
                                          "target": target, "classes": classes})
    run = RunDir(out)
    fingerprints = run.prepare(config, {"train": data, "spec": spec_path}, overwrite=overwrite)
    source = load_pretrained(config.hyperparameters["pretrained"])
    model = ProfileModel(PretrainedUser(source, mode, adapter_dim, name="pretrained_user"), classes, hidden, dropout)
    if not run.exists():
        run.write_config(config, load_spec(spec_path), fingerprints)

    def rows(name):
        return {USER: users[parts[name]]}, y[parts[name]]

    train_x, train_y = rows("train")
    valid_x, valid_y = rows("valid")
    train = InMemoryEpochs(train_x, train_y.astype(np.float32), batch_size, seed)
    majority = int(np.bincount(train_y, minlength=len(classes)).argmax())

    def validate() -> float:
        # Early stopping on the validation cross-entropy (negated: fit maximises): accuracy on a
        # few hundred users moves in steps and stops a slow-starting head before it learns.
        logits = profile_logits(model, valid_x[USER])
        loss = tf_keras.losses.sparse_categorical_crossentropy(valid_y, logits, from_logits=True)
        return -float(np.mean(loss.numpy()))

    result = fit(model, run, config, train, validate, metric="valid_negative_crossentropy", log=log)
    restore_weights(model, run.best)
    test_x, test_y = rows("test")
    table = profile_report(model, test_x[USER], test_y, majority, model.user.users)
    metrics = {"model": "profile", "target": target, "classes": classes, "best_epoch": result.best_epoch,
               "best_valid_crossentropy": -result.best_score, "epochs_run": result.epochs_run,
               "users": {k: int(len(v)) for k, v in parts.items()},
               "transfer": {"mode": mode, "source_users": model.user.known_users, **trainable_share(model.user.encoder)},
               "tables": {"test": table.reset_index().to_dict(orient="records")}}
    atomic_write_json(run.metrics_path, metrics)
    return ProfileResult(metrics, table)
