"""Training on TensorFlow's own distributed engine: tf.distribute strategies, the cluster from TF_CONFIG.

``mdrec train --strategy``:

- ``mirrored``: ``MirroredStrategy`` over this machine's devices; the same input as a
  single-process run (in memory or ``--stream``), each global batch split over the replicas, so
  resume is exact (same batches).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; every node runs the same ``mdrec train``
  command with its own TF_CONFIG; synchronous all-reduce; each worker reads its own file shards.
- ``parameter_server``: ``ParameterServerStrategy`` + ``ClusterCoordinator``. The chief runs
  ``mdrec train`` (the coordinator); workers and parameter servers run the same command (or
  ``python -m mdrec.training.distribute serve``) and only host a ``tf.distribute.Server``.
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
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.errors import MdrecError

STRATEGIES = ("mirrored", "multi_worker", "parameter_server")
# Variables above this size are split row-wise over the parameter servers (at most one shard per
# server); MDREC_MIN_SHARD_BYTES overrides it (a layout choice: results do not depend on it).
MIN_SHARD_BYTES = 4 << 20


def min_shard_bytes() -> int:
    raw = os.environ.get("MDREC_MIN_SHARD_BYTES", "")
    try:
        return int(raw) if raw else MIN_SHARD_BYTES
    except ValueError:
        raise MdrecError(f"MDREC_MIN_SHARD_BYTES={raw!r} is not a number of bytes") from None


# ---- the cluster ----------------------------------------------------------------------------------

def tf_config() -> dict | None:
    """TF_CONFIG parsed (None when unset); a malformed value is a user error."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MdrecError(f"TF_CONFIG is not JSON: {exc.msg} at character {exc.pos}",
                         hint='e.g. {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"], '
                              '"ps": ["host2:2222"]}, "task": {"type": "chief", "index": 0}}') from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise MdrecError("TF_CONFIG needs a 'cluster' mapping of job name -> list of host:port")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise MdrecError("TF_CONFIG needs 'task': {\"type\": \"chief\" | \"worker\" | \"ps\", \"index\": N}")
    kind, index = task["type"], int(task.get("index", 0))
    jobs = config["cluster"]
    if kind not in jobs or not 0 <= index < len(jobs[kind]):
        raise MdrecError(f"TF_CONFIG task {kind}:{index} is not in its cluster ({_describe(jobs)})")
    return config


def _describe(jobs: dict) -> str:
    return ", ".join(f"{len(v)} {k}" for k, v in jobs.items())


def task() -> tuple[str, int]:
    """(task type, index) of this process; ("chief", 0) without TF_CONFIG."""
    config = tf_config()
    if config is None:
        return "chief", 0
    return config["task"]["type"], int(config["task"].get("index", 0))


def check_cluster(strategy: str) -> dict | None:
    """The TF_CONFIG the strategy needs, checked (None for mirrored, which is one machine)."""
    if strategy not in STRATEGIES:
        raise MdrecError(f"unknown strategy '{strategy}'; use one of {', '.join(STRATEGIES)}")
    if strategy == "mirrored":
        return None
    config = tf_config()
    if config is None:
        raise MdrecError(f"--strategy {strategy} needs TF_CONFIG (the cluster and this task)",
                         hint="see README 'Scale out'; mirrored trains on one machine without it")
    jobs = config["cluster"]
    if strategy == "parameter_server":
        if not jobs.get("ps") or not jobs.get("worker") or len(jobs.get("chief", [])) != 1:
            raise MdrecError(f"--strategy parameter_server needs one chief, at least one worker and at least one "
                             f"ps in TF_CONFIG; it has {_describe(jobs)}")
    else:
        if not jobs.get("worker") and not jobs.get("chief"):
            raise MdrecError("--strategy multi_worker needs 'worker' (and optionally one 'chief') in TF_CONFIG")
        if jobs.get("ps"):
            raise MdrecError("--strategy multi_worker takes no 'ps' job; parameter servers are for "
                             "--strategy parameter_server")
    return config


def is_chief() -> bool:
    """Whether this process writes the run folder (the chief, or worker 0 without a chief)."""
    config = tf_config()
    if config is None:
        return True
    kind, index = task()
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and not config["cluster"].get("chief")


def serve(block: bool = True) -> tf.distribute.Server:
    """Host this process's task (a parameter-server worker or ps) until killed."""
    config = tf_config()
    if config is None:
        raise MdrecError("a worker or parameter server needs TF_CONFIG naming its task")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc", start=True)
    if block:
        server.join()
    return server


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (bound once, then released)."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


@dataclass
class LocalCluster:
    """A cluster on this machine's loopback: TensorFlow servers for the workers and parameter
    servers, each its own process (killed on exit); this process or a child is the chief."""

    workers: int = 2
    ps: int = 2
    log_dir: Path | None = None
    chief: bool = True  # False: a multi-worker cluster of workers only (worker 0 is the chief)

    def __post_init__(self):
        chiefs = 1 if self.chief else 0
        ports = free_ports(chiefs + self.workers + self.ps)
        self.cluster = {"chief": [f"127.0.0.1:{p}" for p in ports[:chiefs]],
                        "worker": [f"127.0.0.1:{p}" for p in ports[chiefs:chiefs + self.workers]],
                        "ps": [f"127.0.0.1:{p}" for p in ports[chiefs + self.workers:]]}
        self.cluster = {k: v for k, v in self.cluster.items() if v}
        self.servers: list[subprocess.Popen] = []    # the workers' and parameter servers' TF servers
        self.processes: list[subprocess.Popen] = []  # everything started here (servers and launches)

    def env(self, kind: str = "chief", index: int = 0) -> dict[str, str]:
        """os.environ with this cluster's TF_CONFIG for task ``kind``:``index``."""
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps({"cluster": self.cluster, "task": {"type": kind, "index": index}})
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        return env

    def start(self) -> "LocalCluster":
        """Start the parameter-server cluster's servers (workers and ps); a multi-worker cluster has
        none to start: each of its workers runs the training program itself (:meth:`launch`)."""
        if not self.ps:
            return self
        for kind in ("ps", "worker"):
            for index in range(len(self.cluster[kind])):
                out = subprocess.DEVNULL
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    out = open(self.log_dir / f"{kind}{index}.log", "wb")
                self.servers.append(subprocess.Popen(
                    [sys.executable, "-m", "mdrec.training.distribute", "serve"], env=self.env(kind, index),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
                self.processes.append(self.servers[-1])
        return self

    def launch(self, argv: Sequence[str], kind: str, index: int, log_file: Path | None = None, *,
               cluster_env: bool = True, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Run ``argv`` as task ``kind``:``index`` (killed with the cluster); ``cluster_env=False``
        runs it outside the cluster (no TF_CONFIG), e.g. a single-process reference run;
        ``extra_env`` adds environment variables for this process only."""
        out = subprocess.DEVNULL
        if log_file is not None:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            out = open(log_file, "wb")
        env = {**self.env(kind, index), **(extra_env or {})}
        if not cluster_env:
            env.pop("TF_CONFIG")
        process = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Process ids of the servers (to measure their memory)."""
        return [p.pid for p in self.servers]

    def alive(self) -> bool:
        """Whether every server is still running."""
        return all(p.poll() is None for p in self.servers)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.kill()
        for p in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        self.processes, self.servers = [], []

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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
        from mdrec.data.shards import is_tfrecord, shard_files

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


# ---- the training loop ----------------------------------------------------------------------------

def fit(setup_: Setup, model: tf_keras.Model, run, config, spec, train, validate: Callable[[], float] | None,
        *, rows: int, metric: str = "valid_auc", log: Callable[[str], None] = print,
        on_batch: Callable[[int], None] | None = None, after_build: Callable | None = None,
        resume_from: Path | None = None):
    """:func:`mdrec.training.loop.fit` under a strategy: same checkpoint layout, history and best weights.

    ``train``: the single-process epochs (mirrored), or the sample source (multi-node strategies,
    whose input is ``config.train``'s file shards, ``rows`` rows per epoch).
    ``resume_from``: the checkpoints folder to resume from when it is not ``run``'s (a
    multi-worker non-chief restores the chief's checkpoint and writes its own to scratch).
    """
    from mdrec.training.board import Board
    from mdrec.training.loop import (LOSS_NOTE, FitResult, build, finish_epoch, learning_rate_now,
                                     progress_verbosity, save_weights)

    strategy = setup_.strategy
    ps = is_parameter_server(strategy)
    tf_keras.utils.set_random_seed(config.seed)
    with model_scope(strategy):
        build(model, train.sample())
        if after_build is not None:
            after_build(model)
        optimizer = tf_keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)  # slots exist before any step (PS: on the servers)
    state = {
        "step": tf.Variable(0, dtype=tf.int64, trainable=False),
        "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "batch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "best_auc": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
        "best_epoch": tf.Variable(-1, dtype=tf.int64, trainable=False),
        "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False),
    }
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=2)
    source = tf.train.latest_checkpoint(str(resume_from)) if resume_from is not None else manager.latest_checkpoint
    resumed_from = None
    if source:
        checkpoint.restore(source).assert_existing_objects_matched()
        resumed_from = source
        log(f"resuming from {source}: epoch {int(state['epoch']) + 1}, batch {int(state['batch'])}, "
            f"step {int(state['step'])}")
    history = [h for h in run.read_history() if h["epoch"] < int(state["epoch"])]
    variables = model.trainable_variables

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
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

        @tf.function
        def worker_step(iterator):
            x, y = next(iterator)
            return strategy.run(replica_step, args=(x, y))
    else:
        @tf.function
        def sync_step(x, y):
            losses = strategy.run(replica_step, args=(x, y))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    steps = None if not setup_.files_per_worker else -(-rows // config.batch_size)
    if steps is None:
        steps = train.batches_per_epoch
    stopped_early = int(state["bad_epochs"]) >= config.patience and int(state["epoch"]) < config.epochs
    verbose = progress_verbosity()
    board = Board(run.path) if is_chief() else None  # one set of curves per run: the chief's
    if verbose:
        log(LOSS_NOTE)
    while int(state["epoch"]) < config.epochs and not stopped_early:
        epoch = int(state["epoch"])
        skip = int(state["batch"])
        log(f"epoch {epoch + 1}/{config.epochs}")
        bar = tf_keras.utils.Progbar(steps, verbose=verbose)  # shows the running epoch mean
        started = time.time()
        losses: list[float] = []

        def after_step(loss: float | None) -> None:
            state["step"].assign_add(1)
            state["batch"].assign_add(1)
            if loss is not None:
                losses.append(loss)
                bar.update(int(state["batch"]), values=[("loss", loss)])
            if int(state["step"]) % config.checkpoint_every == 0:
                if ps:
                    _drain(coordinator, pending, losses)
                    bar.update(int(state["batch"]))
                manager.save(checkpoint_number=int(state["step"]))
            if on_batch is not None:
                on_batch(int(state["step"]))

        if ps:
            dataset = _per_worker_dataset(coordinator, strategy, config, spec, setup_.workers, epoch)
            iterator = iter(dataset)
            pending: list = []
            for _ in range(max(steps - skip, 0)):
                pending.append(coordinator.schedule(worker_step, args=(iterator,)))
                after_step(None)
            _drain(coordinator, pending, losses)
        elif setup_.files_per_worker:
            iterator = iter(_synchronous_dataset(strategy, config, spec, epoch))
            for _ in range(max(steps - skip, 0)):
                x, y = next(iterator)
                after_step(float(sync_step(x, y)))
        else:
            for x, y in strategy.experimental_distribute_dataset(train.epoch(epoch, skip)):
                after_step(float(sync_step(x, y)))
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None,
                 "seconds": round(time.time() - started, 2), "steps": int(state["batch"]) - skip,
                 "learning_rate": learning_rate_now(optimizer)}
        stopped_early = finish_epoch(model, run, config, state, manager, history, entry, validate, metric, log,
                                     board)
    if board is not None:
        board.close()
    if not run.best.exists():
        save_weights(model, run.best)
    return FitResult(epochs_run=int(state["epoch"]), best_epoch=int(state["best_epoch"]),
                     best_score=float(state["best_auc"]), resumed_from=resumed_from, stopped_early=stopped_early)


def _drain(coordinator, pending: list, losses: list[float]) -> None:
    """Wait for every scheduled step; their losses join ``losses``."""
    coordinator.join()
    losses.extend(float(value.fetch()) for value in pending)
    pending.clear()


def _epoch_seed(config, epoch: int) -> int:
    return int(config.seed) * 100_003 + epoch


def _per_worker_dataset(coordinator, strategy, config, spec, workers: int, epoch: int):
    """Each parameter-server worker's own TFRecord shards, repeated, shuffled per (seed, epoch)."""
    from mdrec.data.shards import shard_files, tfrecord_dataset

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


if __name__ == "__main__":  # python -m mdrec.training.distribute serve
    if sys.argv[1:] == ["serve"]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        serve()
    else:
        print("usage: python -m mdrec.training.distribute serve   (with TF_CONFIG naming a worker or ps task)",
              file=sys.stderr)
        sys.exit(2)
