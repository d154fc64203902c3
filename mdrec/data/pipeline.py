"""tf.data pipelines: a validated log becomes batches of raw model inputs and labels.

In memory: the log's arrays are sliced per batch; each epoch is a seeded permutation, so a run
resumed at (epoch, batch) sees exactly the batches it would have seen. Streaming: chunks are read
from disk, validated and batched without holding the log in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.data.log import DOMAIN, LABEL, Log, iter_logs
from mdrec.data.sequences import add_history
from mdrec.errors import MdrecError
from mdrec.spec import Spec


def model_inputs(log: Log, spec: Spec, history: np.ndarray | None = None, *,
                 features=None) -> dict[str, np.ndarray]:
    """Raw model inputs keyed as in ``data.signature.input_signature``; with ``features`` (a
    subset of the spec's, e.g. a candidate tower's) only those, the line and no history."""
    inputs: dict[str, np.ndarray] = {}
    for feature in spec.features if features is None else features:
        if feature.type == "numeric":
            inputs[feature.name] = log.frame[feature.name].to_numpy(dtype=np.float32)
        elif feature.type == "dense_vector":
            inputs[feature.name] = log.dense[feature.name]
        else:
            inputs[feature.name] = log.frame[feature.name].to_numpy(dtype=object)
    if spec.domain.column:
        inputs[spec.domain.column] = log.frame[DOMAIN].to_numpy(dtype=object)
    if spec.sequence and features is None:
        if history is None:
            history = add_history(log, spec)
        inputs[spec.sequence.name] = history
    return inputs


def labels_of(log: Log) -> np.ndarray:
    return log.frame[LABEL].to_numpy().astype(np.float32)


def epoch_dataset(inputs: Mapping[str, np.ndarray | tf.Tensor], labels: np.ndarray, batch_size: int, *,
                  seed: int | None = None, epoch: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of (inputs, labels) for one epoch.

    With ``seed`` the rows are permuted by a generator seeded with (seed, epoch), so the order is
    reproducible; ``skip_batches`` drops the batches a resumed run has already trained on. Inputs
    may be arrays or tensors (:func:`as_tensors`: converted once, where arrays of strings are
    converted again every epoch).
    """
    n = len(labels)
    order = np.arange(n)
    if seed is not None:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    order = order[skip_batches * batch_size:]
    # Gathering per epoch keeps the dataset free of large captured constants.
    features = {name: tf.gather(values, order) if tf.is_tensor(values) else values[order]
                for name, values in inputs.items()}
    return in_memory(consecutive_batches((features, labels[order]), batch_size))


def as_tensors(inputs: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """Model inputs as tensors (arrays of strings as tf.string), for :func:`epoch_dataset`."""
    return {name: tf.convert_to_tensor(values, dtype=_dtype(values)) for name, values in inputs.items()}


def consecutive_batches(tensors: Any, batch_size: int) -> tf.data.Dataset:
    """Rows [0, b), [b, 2b), ... of a structure of tensors or arrays (the last batch may be short).

    Cut a batch at a time: ``from_tensor_slices(...).batch(b)`` slices row by row and stacks the
    rows again, most of the input pipeline's time for string features."""
    flat = [tf.convert_to_tensor(t) for t in tf.nest.flatten(tensors)]
    n = int(flat[0].shape[0])
    full = n - n % batch_size
    whole = [tf.reshape(t[:full], tf.concat([[full // batch_size, batch_size], tf.shape(t)[1:]], 0)) for t in flat]
    dataset = tf.data.Dataset.from_tensor_slices(tf.nest.pack_sequence_as(tensors, whole))
    if full < n:
        last = tf.data.Dataset.from_tensors(tf.nest.pack_sequence_as(tensors, [t[full:] for t in flat]))
        dataset = dataset.concatenate(last)
    return dataset


def domain_batch_dataset(inputs: dict[str, np.ndarray], labels: np.ndarray, domains: np.ndarray,
                         batch_size: int, *, seed: int, epoch: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches drawn from one domain each (as STAR trains), in a seeded random order of batches.

    Each domain's rows are permuted and cut into batches; the batches of all domains are then
    shuffled together, so small domains are visited throughout the epoch.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    batches = []
    for domain in sorted(set(domains.tolist())):
        rows = rng.permutation(np.flatnonzero(domains == domain))
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    order = rng.permutation(len(batches))[skip_batches:]

    def generate():
        for b in order:
            index = batches[b]
            yield {name: values[index] for name, values in inputs.items()}, labels[index]

    signature = ({name: tf.TensorSpec((None,) + values.shape[1:], _dtype(values)) for name, values in inputs.items()},
                 tf.TensorSpec([None], tf.float32))
    return in_memory(tf.data.Dataset.from_generator(generate, output_signature=signature))


def in_memory(batches: tf.data.Dataset) -> tf.data.Dataset:
    """Batches of arrays in memory, two prepared ahead, without tf.data's autotuning.

    The autotuner's background thread sleeps in doubling periods (10 ms x 2^k); finishing or dropping
    an iterator waited for its next wake-up, so an epoch took 2.56 s x 2^k (measured: 1.5 s lost
    after a 3.7 s epoch). Slicing arrays in memory needs no tuning.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(2).with_options(options)


def count_domain_batches(domains: np.ndarray, batch_size: int) -> int:
    _, counts = np.unique(domains, return_counts=True)
    return int(sum(-(-c // batch_size) for c in counts))


def _dtype(values: np.ndarray) -> tf.DType:
    return tf.string if values.dtype == object else tf.as_dtype(values.dtype)


def predict_dataset(inputs: dict[str, np.ndarray], batch_size: int) -> tf.data.Dataset:
    return in_memory(consecutive_batches(inputs, batch_size))


def streaming_dataset(path: str | Path, spec: Spec, batch_size: int, *, chunk_rows: int = 65536,
                      known_domains: Sequence[str] | None = None,
                      shuffle_buffer: int = 0, seed: int = 0) -> tf.data.Dataset:
    """Batches read from disk chunk by chunk (memory bounded by ``chunk_rows``).

    Behaviour sequences need each user's whole past, so a spec with a sequence cannot stream.
    """
    if spec.sequence is not None:
        raise MdrecError("streaming input cannot build behaviour sequences (they need each user's full "
                         "history)", path=spec.source, hint="train in memory, or remove `sequence` from the spec")
    from mdrec.data.io import table_files
    from mdrec.data.shard_format import is_tfrecord
    from mdrec.data.tfrecord import tfrecord_dataset
    from mdrec.data.signature import input_signature

    files = table_files(path)
    if all(is_tfrecord(f) for f in files):  # shards of `mdrec data convert`: parsed in the graph
        return tfrecord_dataset(files, spec, batch_size, shuffle_buffer=shuffle_buffer, seed=seed)
    signature = input_signature(spec)

    def generate() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        for log in iter_logs(path, spec, chunk_rows, known_domains=known_domains):
            yield model_inputs(log, spec), labels_of(log)

    output_signature = ({name: tf.TensorSpec(s.shape, s.dtype) for name, s in signature.items()},
                        tf.TensorSpec([None], tf.float32))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=output_signature).unbatch()
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
