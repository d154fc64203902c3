"""Training on TensorFlow's own distributed engine: tf.distribute strategies, the cluster from TF_CONFIG.

``mdrec train --strategy``:

- ``mirrored``: ``MirroredStrategy`` over this machine's devices; the same input as a
  single-process run (in memory or ``--stream``), each global batch split over the replicas, so
  resume is exact (same batches).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; every node runs the same ``mdrec train``
  command with its own TF_CONFIG; synchronous all-reduce; each worker reads its own file shards.
- ``parameter_server``: ``ParameterServerStrategy`` + ``ClusterCoordinator``. The chief runs
  ``mdrec train`` (the coordinator); workers and parameter servers run the same command (or
  ``python -m mdrec.training.cluster serve``) and only host a ``tf.distribute.Server``.
  Variables live on the parameter servers; tables above ``min_shard_bytes`` are split row-wise
  over them (``MinSizePartitioner``), so a 10^7-row embedding table never has to fit on one
  machine. Workers train asynchronously, each on its own TFRecord shards (TFRecord only: a
  worker executes graphs and cannot run the Python that reads Parquet or CSV).

The cluster comes from TF_CONFIG as TensorFlow defines it (``{"cluster": {"chief": [...],
"worker": [...], "ps": [...]}, "task": {"type": "worker", "index": 0}}``).

The epoch is ``ceil(training rows / --batch-size)`` steps under every strategy: ``--batch-size`` is
the global batch of one synchronous step (split over the replicas), or the batch of one
asynchronous step on one worker (parameter_server). Inputs of the multi-node strategies repeat
(seeded, reshuffled each pass) and exactly that many steps are run, so no worker waits for
another's shorter shard.

Checkpoints hold the model, the optimizer and the loop state (step, epoch, batch, best score)
under every strategy and restore in a single process (sharded variables restore into whole ones):
a run trained on a cluster is evaluated, exported and compared like any other. Resume: the
same command continues from the last checkpoint. Only ``mirrored`` (and the single process)
resumes the input exactly; the multi-node strategies restart the interrupted epoch's
remaining steps from a fresh seeded pass over their shards.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.errors import MdrecError
from mdrec.training.asynchronous_adam import AsynchronousAdam
from mdrec.training.cluster import check_cluster, is_chief, serve, task, tf_config
from mdrec.training.fused_adam import FusedAdam
from mdrec.training.loop import timed_steps

# Variables above this size are split row-wise over the parameter servers (at most one shard per
# server); MDREC_MIN_SHARD_BYTES overrides it (a layout choice: results do not depend on it).
MIN_SHARD_BYTES = 4 << 20


def min_shard_bytes() -> int:
    raw = os.environ.get("MDREC_MIN_SHARD_BYTES", "")
    try:
        return int(raw) if raw else MIN_SHARD_BYTES
    except ValueError:
        raise MdrecError(f"MDREC_MIN_SHARD_BYTES={raw!r} is not a number of bytes") from None


# ---- strategies -----------------------------------------------------------------------------------

_CREATING = threading.local()


class EmbeddingPartitioner:
    """``MinSizePartitioner`` for embedding tables only.

    A table is read by row (a gather on each shard), so splitting its rows over the parameter
    servers costs nothing; other weights are indexed by domain or used whole (STAR's per-domain
    kernels ``W_p[d]``, which a sharded variable cannot index by a tensor), so they stay in one
    piece. Which variable is a table is known from its name (tf_keras ``Embedding`` calls it
    "embeddings"), set by :func:`model_scope`'s variable creator just before the strategy's
    creator asks the partitioner.
    """

    def __init__(self, min_shard_bytes: int, max_shards: int):
        self.inner = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=min_shard_bytes, max_shards=max_shards)

    def __call__(self, shape, dtype, axis=0):
        if getattr(_CREATING, "embedding", False):
            return self.inner(shape, dtype, axis)
        return [1] * len(shape)


def _mark_embeddings(next_creator, **kwargs):
    name = str(kwargs.get("name") or "")
    previous = getattr(_CREATING, "embedding", False)
    _CREATING.embedding = name.rsplit("/", 1)[-1].split(":")[0] == "embeddings"
    try:
        return next_creator(**kwargs)
    finally:
        _CREATING.embedding = previous


@contextlib.contextmanager
def model_scope(strategy: tf.distribute.Strategy | None):
    """Where a model's variables must be created: the strategy's scope (nothing without one)."""
    if strategy is None:
        yield
        return
    with strategy.scope(), tf.variable_creator_scope(_mark_embeddings):
        yield


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy ``name`` on the cluster TF_CONFIG describes."""
    config = check_cluster(name)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    num_ps = len(config["cluster"]["ps"])
    partitioner = EmbeddingPartitioner(min_shard_bytes(), num_ps)
    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Input pipelines: one per worker (per machine for the synchronous strategies)."""
    if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        return len(tf_config()["cluster"]["worker"])
    extended = strategy.extended
    return int(getattr(extended, "_num_workers", 1) or 1)


def is_parameter_server(strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


def sharding_report(model: tf_keras.Model) -> dict[str, dict]:
    """Embedding tables split over parameter servers: layer name -> {"shards", "rows" per shard}."""
    out = {}
    for layer in model.submodules:
        table = getattr(layer, "embeddings", None)
        if type(table).__name__ == "ShardedVariable":
            out[layer.name] = {"shards": len(table.variables), "rows": [int(v.shape[0]) for v in table.variables]}
    return dict(sorted(out.items()))


# ---- setting a run up ----------------------------------------------------------------------------

@dataclass
class Setup:
    """What train_run needs to know about a distributed run."""

    name: str
    strategy: tf.distribute.Strategy
    chief: bool
    files_per_worker: bool  # input read from file shards on each worker (not the single-process input)
    workers: int
    scratch: Path | None = None  # a non-chief's private folder for the writes the strategy requires

    def scope(self):
        return model_scope(self.strategy)

    def finish(self) -> None:
        """Remove a non-chief's scratch folder (its copies of checkpoints and weights)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def describe(self) -> dict:
        config = tf_config()
        return {"name": self.name, "replicas": int(self.strategy.num_replicas_in_sync), "workers": self.workers,
                "cluster": {k: len(v) for k, v in config["cluster"].items()} if config else None}


def setup(config, spec) -> Setup:
    """Check ``config`` against ``spec`` and the cluster and create the strategy.

    A parameter-server worker or ps task never returns: it serves until killed.
    """
    from mdrec.models.registry import model_family

    name = config.strategy
    check_cluster(name)
    if model_family(config.model) != "ctr":
        raise MdrecError(f"--strategy {name} trains CTR models (star, shared_bottom, separate, mmoe); "
                         f"'{config.model}' trains in one process", hint="drop --strategy")
    if name == "parameter_server" and task()[0] in ("worker", "ps"):
        serve()  # blocks: the chief's coordinator drives this server
        raise SystemExit(0)
    if config.domain_batches:
        raise MdrecError(f"--domain-batches needs the training log in memory in one process; drop it with "
                         f"--strategy {name}")
    if config.warm_start and name != "mirrored":
        raise MdrecError(f"--warm-start copies rows in one process; with --strategy {name} warm-start a run "
                         "trained with --strategy mirrored or none")
    files_per_worker = name in ("multi_worker", "parameter_server")
    if files_per_worker and spec.sequence is not None:
        raise MdrecError(f"--strategy {name} reads the training log in file shards on each worker and cannot "
                         "build behaviour sequences (they need each user's whole past)", path=spec.source,
                         hint="remove `sequence` from the spec, or train with --strategy mirrored in memory")
    if name != "parameter_server" and config.hyperparameters.get("normalization", "none") != "none":
        raise MdrecError(f"partitioned normalization updates its moving statistics inside the step, which "
                         f"--strategy {name} does not aggregate across replicas",
                         hint="use --strategy parameter_server, or drop normalization")
    if name == "parameter_server":
        from mdrec.data.shard_format import is_tfrecord
        from mdrec.data.shards import shard_files

        files = shard_files(config.train)
        if not all(is_tfrecord(f) for f in files):
            raise MdrecError("--strategy parameter_server reads TFRecord shards: its workers run graphs, not the "
                             "Python that reads Parquet or CSV", path=config.train,
                             hint="convert the log: mdrec data convert --spec SPEC --data LOG --out DIR "
                                  "--format tfrecord --shards N")
    if files_per_worker:  # enough files for every worker, checked before the cluster is joined
        from mdrec.data.shards import shard_files, worker_files

        jobs = tf_config()["cluster"]
        expected = len(jobs["worker"]) + (len(jobs.get("chief", [])) if name == "multi_worker" else 0)
        worker_files(shard_files(config.train), 0, expected)
    strategy = make_strategy(name)
    workers = num_workers(strategy)
    chief = is_chief()
    scratch = None if chief else Path(tempfile.mkdtemp(prefix=f"mdrec-{task()[0]}{task()[1]}-"))
    return Setup(name, strategy, chief, files_per_worker, workers, scratch)


# ---- the training steps under a strategy ------------------------------------------------------------

class StrategySteps:
    """:class:`mdrec.training.loop.Steps` under a tf.distribute strategy, for
    :func:`mdrec.training.loop.fit` (same checkpoint layout, history and best weights as one process).

    ``train``: the single-process epochs (mirrored); the multi-node strategies read
    ``config.train``'s file shards instead, ``rows`` rows per epoch.
    """

    def __init__(self, setup_: Setup, config, spec, train, *, rows: int):
        self.setup, self.config, self.spec, self.train = setup_, config, spec, train
        self.strategy = setup_.strategy
        self.ps = is_parameter_server(self.strategy)
        self.chief = is_chief()
        # Asynchronous workers can read an update half done (mdrec.training.asynchronous_adam).
        self.optimizer = AsynchronousAdam if self.ps else FusedAdam
        self.batches_per_epoch = -(-rows // config.batch_size) if setup_.files_per_worker else train.batches_per_epoch
        self._pending: list = []

    def scope(self):
        return model_scope(self.strategy)

    def compile(self, model: tf_keras.Model, optimizer) -> None:
        strategy, ps = self.strategy, self.ps
        variables = model.trainable_variables
        optimizer.build(variables)  # slots exist before any step and any restore (PS: on the servers)

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = model.training_loss(x, y)
                if ps:  # one replica per worker step
                    loss = tf.reduce_mean(per_example)
                    total = loss + (tf.add_n(model.losses) if model.losses else 0.0)
                else:  # the global batch is split over the replicas and their gradients summed: scale by 1/replicas
                    loss = tf.reduce_mean(per_example) / strategy.num_replicas_in_sync
                    total = loss + (tf.nn.scale_regularization_loss(tf.add_n(model.losses)) if model.losses else 0.0)
            grads = tape.gradient(total, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return loss

        if ps:
            self.coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

            @tf.function
            def worker_step(iterator):
                x, y = next(iterator)
                return strategy.run(replica_step, args=(x, y))

            self._step = worker_step
        else:
            @tf.function
            def sync_step(x, y):
                losses = strategy.run(replica_step, args=(x, y))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

            self._step = sync_step

    def run_epoch(self, epoch: int, skip: int, after_step: Callable[[float | None], None]) -> float | None:
        remaining = max(int(self.batches_per_epoch or 0) - skip, 0)
        if self.ps:  # asynchronous: steps are scheduled, their losses come with flush()
            dataset = _per_worker_dataset(self.coordinator, self.strategy, self.config, self.spec,
                                          self.setup.workers, epoch)
            iterator = iter(dataset)
            for _ in range(remaining):
                self._pending.append(self.coordinator.schedule(self._step, args=(iterator,)))
                after_step(None)
            return None
        if self.setup.files_per_worker:
            batches = _synchronous_dataset(self.strategy, self.config, self.spec, epoch)
            iterator = iter(batches)
            pairs = (next(iterator) for _ in range(remaining))
        else:
            pairs = iter(self.strategy.experimental_distribute_dataset(self.train.epoch(epoch, skip)))
        return timed_steps(self._step, pairs, after_step)

    def flush(self) -> list[float]:
        """Wait for every scheduled step (parameter_server); their losses."""
        if not self._pending:
            return []
        self.coordinator.join()
        losses = [float(value.fetch()) for value in self._pending]
        self._pending.clear()
        return losses


def _epoch_seed(config, epoch: int) -> int:
    return int(config.seed) * 100_003 + epoch


def _per_worker_dataset(coordinator, strategy, config, spec, workers: int, epoch: int):
    """Each parameter-server worker's own TFRecord shards, repeated, shuffled per (seed, epoch)."""
    from mdrec.data.shards import shard_files
    from mdrec.data.tfrecord import tfrecord_dataset

    files = [str(f) for f in shard_files(config.train)]
    seed = _epoch_seed(config, epoch)

    def dataset_fn(context):
        index = tf.distribute.coordinator.experimental_get_current_worker_index()
        return tfrecord_dataset(files, spec, config.batch_size, shuffle_buffer=_shuffle_buffer(config),
                                seed=seed, repeat=True, shard=(workers, index))

    @tf.function
    def per_worker():
        return strategy.distribute_datasets_from_function(dataset_fn)

    return coordinator.create_per_worker_dataset(per_worker)


def _synchronous_dataset(strategy, config, spec, epoch: int):
    """Multi-worker input: each worker's own file shards, repeated, its share of the global batch."""
    from mdrec.data.shards import shard_files, sharded_dataset, worker_files

    files = shard_files(config.train)
    seed = _epoch_seed(config, epoch)

    def dataset_fn(context: tf.distribute.InputContext):
        mine = worker_files(files, context.input_pipeline_id, context.num_input_pipelines)
        return sharded_dataset(mine, spec, context.get_per_replica_batch_size(config.batch_size),
                               shuffle_buffer=_shuffle_buffer(config), seed=seed, repeat=True, drop_remainder=True)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _shuffle_buffer(config) -> int:
    return 16 * config.batch_size
