"""TensorBoard event files of a run: curves per epoch, overall and per line, and score histograms.

``tensorboard --logdir runs/`` shows every run folder below ``runs/``. Layout of one run:

  RUN/tensorboard/train/        loss (the mean of the epoch's batch losses: the number the log
                                prints), learning_rate, epoch_seconds; CTR runs also auc and logloss,
                                overall and per line ("auc/books"), on a fixed sample of training rows
                                scored like the validation rows (so the two curves compare)
  RUN/tensorboard/validation/   the validation metrics, overall and per line; CTR runs also the
                                predicted click probability per line as a histogram
  RUN/tensorboard/embeddings/   the embedding projector (mdrec.training.projector)

The step of every point is the epoch (1, 2, ...). Points are written after the epoch's checkpoint,
so a run killed and resumed never writes an epoch twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import mdrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

FOLDER = "tensorboard"
TRAIN, VALIDATION = "train", "validation"
HISTOGRAM_SAMPLE = 20_000  # scores kept per line for a histogram (a seeded sample of larger lines)


@dataclass
class Validation:
    """What one validation pass measured.

    score: the early-stopping score (higher is better). scalars: tag -> value for the validation
    curves ("auc", "auc/books", ...). train_scalars: the same tags measured on training rows.
    histograms: tag -> values ("score/books": predicted probabilities float [N]).
    """

    score: float
    scalars: dict[str, float] = field(default_factory=dict)
    train_scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)


def scored(result: "Validation | float") -> Validation:
    """A validation function's result as a Validation (plain floats are the score alone)."""
    return result if isinstance(result, Validation) else Validation(score=float(result))


def per_line(name: str, values: dict[str, float]) -> dict[str, float]:
    """{"ALL": v, "books": w} -> {name: v, name/books: w} (TensorBoard groups tags by the part before '/')."""
    return {(name if line == "ALL" else f"{name}/{line}"): float(v) for line, v in values.items()}


class Board:
    """Writers of one run's event files; ``epoch()`` adds the points of a finished epoch."""

    def __init__(self, run_path: str | Path):
        self.folder = Path(run_path) / FOLDER
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, name: str) -> tf.summary.SummaryWriter:
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.folder / name))
        return self._writers[name]

    def epoch(self, epoch: int, entry: dict, validation: Validation | None) -> None:
        """Points of epoch ``epoch`` (0-based; written at step epoch + 1) from its history entry
        (train_loss, seconds, learning_rate) and its validation."""
        step = epoch + 1
        train = {"loss": entry.get("train_loss"), "learning_rate": entry.get("learning_rate"),
                 "epoch_seconds": entry.get("seconds")}
        if validation is not None:
            train.update(validation.train_scalars)
        self.scalars(TRAIN, step, train)
        if validation is not None:
            self.scalars(VALIDATION, step, validation.scalars)
            with self.writer(VALIDATION).as_default(step=step):
                for tag, values in validation.histograms.items():
                    tf.summary.histogram(tag, _sample(np.asarray(values, np.float64)))
        self.flush()

    def scalars(self, writer: str, step: int, values: dict[str, float | None]) -> None:
        """Finite values only (an undefined AUC of a one-class line is left out, not drawn as 0)."""
        finite = {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
        if not finite:
            return
        with self.writer(writer).as_default(step=step):
            for tag, value in finite.items():
                tf.summary.scalar(tag, value)

    def flush(self) -> None:
        for w in self._writers.values():
            w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()


def _sample(values: np.ndarray) -> np.ndarray:
    if len(values) <= HISTOGRAM_SAMPLE:
        return values
    return np.random.default_rng(0).choice(values, HISTOGRAM_SAMPLE, replace=False)
