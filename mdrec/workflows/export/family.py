"""What one family contributes to an export (:class:`FamilyExport`), and the pieces every
family's builder shares: warmup batches cut from real rows, the run's first data file that exists.
The builders (:mod:`mdrec.workflows.export.families` and the family modules) import this; it
imports none of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError

# Batch sizes of the warmup requests: a single request and a typical batch; records per size.
WARMUP_BATCH_SIZES = (1, 64)
WARMUP_RECORDS_PER_SIZE = 4

Batch = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass
class FamilyExport:
    """What one family contributes to an export.

    module: the object ``tf.saved_model.save`` writes; it must track every variable and table the
        signatures use (e.g. a ``tf.Module`` holding the Keras model).
    signatures: signature name -> concrete function with an explicit, named input signature.
    warmup: signature name -> request batches (raw inputs by input name) built from real rows.
    references: signature name -> in-process function giving the outputs the export must reproduce
        (on a subset of its output names) for a batch; used to verify the export before publishing.
    assets: name in assets/ -> run file (or folder) to copy there.
    metadata: extra fields for assets/export.json.
    save_options: tf.saved_model.SaveOptions for custom ops (ScaNN's namespace), or None.
    """

    module: tf.Module
    signatures: dict[str, tf.types.experimental.ConcreteFunction]
    warmup: dict[str, list[Batch]]
    references: dict[str, Callable[[Batch], Outputs]]
    assets: dict[str, Path]
    metadata: dict = field(default_factory=dict)
    save_options: tf.saved_model.SaveOptions | None = None


def warmup_batches(inputs: Batch, sizes: tuple[int, ...] = WARMUP_BATCH_SIZES,
                   per_size: int = WARMUP_RECORDS_PER_SIZE) -> list[Batch]:
    """Consecutive row slices: ``per_size`` batches of each size (clipped to the rows there are)."""
    rows = len(next(iter(inputs.values())))
    batches = []
    for size in sizes:
        size = min(size, rows)
        for start in range(0, min(per_size * size, rows - size + 1), size):
            batches.append({name: values[start:start + size] for name, values in inputs.items()})
    return batches


def first_existing(paths: list[str | None], run_path: Path) -> str:
    """The first of the run's data files that exists, as an absolute path (export.json records it)."""
    for path in paths:
        if path and Path(path).exists():
            return str(Path(path).resolve())
    raise MdrecError("none of the run's data files (valid, test, train in config.json) exists, and the "
                     "warmup requests are built from real rows", path=str(run_path),
                     hint="put the run's data back at the paths its config.json names")
