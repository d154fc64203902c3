"""Where a training epoch's batches come from: arrays in memory (a seeded permutation per epoch,
or one line per batch) or files streamed from disk. A resumed epoch skips the batches it saw."""
from __future__ import annotations

from typing import Callable

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.data.pipeline import as_tensors, count_domain_batches, domain_batch_dataset, epoch_dataset


class InMemoryEpochs:
    """Training batches from arrays in memory: a seeded permutation per epoch; with ``domains``,
    every batch comes from one domain (``--domain-batches``)."""

    varying_dims = (0,)  # the batch's rows (the last batch is shorter)

    def __init__(self, inputs: dict[str, np.ndarray], labels: np.ndarray, batch_size: int, seed: int,
                 domains: np.ndarray | None = None):
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed
        self.domains = domains
        self.tensors = as_tensors(inputs) if domains is None else None  # converted once, gathered per epoch
        self.batches_per_epoch: int | None = (-(-len(labels) // batch_size) if domains is None
                                              else count_domain_batches(domains, batch_size))

    def sample(self) -> dict[str, np.ndarray]:
        return self.inputs

    def epoch(self, epoch: int, skip_batches: int) -> tf.data.Dataset:
        if self.domains is not None:
            return domain_batch_dataset(self.inputs, self.labels, self.domains, self.batch_size,
                                        seed=self.seed, epoch=epoch, skip_batches=skip_batches)
        return epoch_dataset(self.tensors or self.inputs, self.labels, self.batch_size, seed=self.seed, epoch=epoch,
                             skip_batches=skip_batches)


class StreamingEpochs:
    """Training batches read from disk each epoch (bounded memory); resume skips seen batches."""

    varying_dims = (0,)

    def __init__(self, make_dataset: Callable[[int], tf.data.Dataset], sample: dict[str, np.ndarray]):
        self.make_dataset = make_dataset
        self._sample = sample
        self.batches_per_epoch = None  # unknown without a pass over the files

    def sample(self) -> dict[str, np.ndarray]:
        return self._sample

    def epoch(self, epoch: int, skip_batches: int) -> tf.data.Dataset:
        return self.make_dataset(epoch).skip(skip_batches)
