"""A CTR model's early-stopping score and its curves: AUC and logloss on the validation rows,
overall and per line, and the same on a fixed sample of training rows."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

import tf_keras

from mdrec.evaluation.metrics import ctr_report
from mdrec.training.board import Validation, per_line
from mdrec.training.inference import predict

TRAIN_SAMPLE = 20_000  # training rows scored at each epoch's end for the train curves


def auc_validation(model: tf_keras.Model, inputs: dict[str, np.ndarray], labels: np.ndarray,
                   lines: np.ndarray | None = None, train: tuple | None = None) -> Callable[[], Validation]:
    """Early-stopping score of a CTR model: AUC on the validation rows.

    ``lines`` (object [N]): each row's line, for the curves per line. ``train``: (inputs, labels,
    lines) of a fixed sample of training rows, scored the same way for the train curves.
    """
    def validate() -> Validation:
        probabilities = predict(model, inputs)
        scalars = ctr_scalars(labels, probabilities, lines)
        result = Validation(score=scalars["auc"], scalars=scalars)
        if lines is not None:
            result.histograms = {f"score/{line}": probabilities[lines == line] for line in np.unique(lines)}
        if train is not None:
            train_inputs, train_labels, train_lines = train
            result.train_scalars = ctr_scalars(train_labels, predict(model, train_inputs), train_lines)
        return result

    return validate


def ctr_scalars(labels: np.ndarray, probabilities: np.ndarray, lines: np.ndarray | None) -> dict[str, float]:
    """auc and logloss overall ("auc") and per line ("auc/books") from :func:`ctr_report`'s table
    (a line with one class has no AUC: NaN, left out of the curves)."""
    per_domain = lines is not None and len(np.unique(lines)) > 1
    frame = pd.DataFrame({"label": labels, "score": probabilities, "line": lines if per_domain else ""})
    table = ctr_report(frame, label="label", score="score", domain="line" if per_domain else None)
    return {**per_line("auc", table["auc"].to_dict()), **per_line("logloss", table["logloss"].to_dict())}


def training_sample(inputs: dict[str, np.ndarray], labels: np.ndarray, lines: np.ndarray, seed: int,
                    size: int = TRAIN_SAMPLE) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A seeded sample of at most ``size`` training rows for the train curves (same rows every epoch)."""
    if len(labels) <= size:
        return inputs, labels, lines
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), size, replace=False))
    return {k: v[rows] for k, v in inputs.items()}, labels[rows], lines[rows]
