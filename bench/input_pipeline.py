"""Sharded input and distributed training throughput, measured in one run.

1. Input: rows per second of an epoch read from 8 file shards by tf.data, for each input path
   (TFRecord parsed in the graph: --strategy parameter_server and --stream on shards; Parquet
   shards through pandas: --strategy multi_worker; the single Parquet file through the existing
   --stream reader), against the rate a STAR training step consumes rows (batches cached in
   memory). Target: input at least 5x faster than training, so it never bounds it.
2. Training throughput with 1 and 2 workers: parameter-server (2 ps) and multi-worker clusters on
   this machine's loopback (TensorFlow servers in subprocesses), steady-state rows per second.
3. A 10-million-row embedding table (``user_id`` with ``hash_buckets: 10000000``) trained by
   ``mdrec train --strategy parameter_server`` (a chief, 2 workers, 2 ps): peak memory of every
   process of the cluster (VmHWM from /proc; psutil is not needed), the collisions metrics.json
   reports, and the table's layout over the parameter servers.

Prints one JSON line per measurement. All processes share this machine's cores, so cluster
numbers measure overheads, not the speed-up of separate machines.

    python bench/input_pipeline.py [--impressions 200000] [--big-rows 300000] [--skip-big]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def spec_text(hash_buckets: int | None = None, dim: int = 16) -> str:
    """The synthetic spec without its behaviour sequence (sharded input cannot build one)."""
    text = (ROOT / "feature_specs" / "synthetic.yaml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("sequence:"))
    if hash_buckets:
        text = text.replace("{name: user_id, role: user_id, type: categorical, embedding_dim: 16}",
                            f"{{name: user_id, role: user_id, type: categorical, embedding_dim: {dim}, "
                            f"hash_buckets: {hash_buckets}}}")
        assert "hash_buckets" in text
    return text + "\n"


# ---- process memory (/proc; no psutil) -------------------------------------------------------------

def _status(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            children = []
        for child in map(int, children):
            out.append(child)
            todo.append(child)
    return out


# ---- 1. input against training ---------------------------------------------------------------------

def rows_per_second(dataset, max_batches: int | None = None) -> tuple[float, int]:
    iterator = iter(dataset)
    first = next(iterator)  # warm up (graph building, first file opens) outside the timing
    rows, started = 0, time.perf_counter()
    for count, (_, y) in enumerate(iterator):
        rows += int(y.shape[0])
        if max_batches and count + 1 >= max_batches:
            break
    del first
    return rows / (time.perf_counter() - started), rows


def input_vs_training(work: Path, args) -> None:
    import tensorflow as tf
    import tf_keras

    from mdrec.data.log import iter_logs
    from mdrec.data.pipeline import streaming_dataset
    from mdrec.data.shards import python_dataset, shard_files, tfrecord_dataset
    from mdrec.data.transform import Transform
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec

    spec = load_spec(work / "spec.yaml")
    batch, buffer = args.batch_size, 16 * args.batch_size
    tfrecord = shard_files(work / "train_tfrecord")
    parquet = shard_files(work / "train_parquet")
    rates = {}
    for name, make in (
            ("tfrecord_shards_graph", lambda: tfrecord_dataset(tfrecord, spec, batch, shuffle_buffer=buffer, seed=0)),
            ("parquet_shards_pandas", lambda: python_dataset(parquet, spec, batch, shuffle_buffer=buffer, seed=0)),
            ("parquet_file_stream", lambda: streaming_dataset(work / "data" / "train.parquet", spec, batch,
                                                              shuffle_buffer=buffer, seed=0))):
        rate, rows = rows_per_second(make())
        rates[name] = rate
        emit(measure="input_rows_per_s", path=name, rows=rows, batch=batch, rows_per_s=round(rate))

    transform = Transform.fit(iter_logs(work / "train_tfrecord", spec), spec)
    model = build_model("star", spec, transform)
    optimizer = tf_keras.optimizers.Adam(1e-3)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.training_loss(x, y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    source = tfrecord_dataset(tfrecord, spec, batch, shuffle_buffer=buffer, seed=0, repeat=True)
    cached = list(source.take(args.train_batches + 1))
    step(*cached[0])
    started = time.perf_counter()
    for x, y in cached[1:]:
        step(x, y)
    float(step(*cached[1]))
    consumed = args.train_batches * batch / (time.perf_counter() - started)
    emit(measure="train_rows_per_s", model="star", input="cached batches", batch=batch, rows_per_s=round(consumed))
    iterator = iter(source)
    for _ in range(20):  # fill the shuffle buffer and the prefetch queues before timing
        next(iterator)
    started = time.perf_counter()
    for _ in range(args.train_batches):
        step(*next(iterator))
    fed = args.train_batches * batch / (time.perf_counter() - started)
    emit(measure="train_rows_per_s", model="star", input="tfrecord shards (graph)", batch=batch,
         rows_per_s=round(fed), fed_over_cached=round(fed / consumed, 3))
    for name, rate in rates.items():
        emit(measure="input_over_training", path=name, ratio=round(rate / consumed, 2), target=5.0,
             met=bool(rate / consumed >= 5.0))


# ---- 2. cluster throughput (the chief's side runs in a subprocess: --role) --------------------------

def cluster_role(args) -> None:
    """A chief (parameter_server) or a worker (multi_worker) that times steady-state steps."""
    import tensorflow as tf
    import tf_keras

    from mdrec.data.log import iter_logs
    from mdrec.data.pipeline import model_inputs
    from mdrec.data.transform import Transform
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec
    from mdrec.training import cluster, distribute
    from mdrec.training.inference import build
    from mdrec.training.run import TrainConfig

    work = Path(args.work)
    spec = load_spec(work / "spec.yaml")
    name = "parameter_server" if args.role == "ps-chief" else "multi_worker"
    shards = work / ("train_tfrecord" if name == "parameter_server" else "train_parquet")
    config = TrainConfig(model="star", train=str(shards), batch_size=args.batch_size, strategy=name)
    strategy = distribute.make_strategy(name)
    workers = distribute.num_workers(strategy)
    transform = Transform.fit(iter_logs(shards, spec), spec)
    sample = model_inputs(next(iter_logs(shards, spec, 64)), spec)
    with distribute.model_scope(strategy):
        model = build_model("star", spec, transform)
        build(model, sample)
        optimizer = tf_keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.training_loss(x, y)) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    if name == "parameter_server":
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
        iterator = iter(distribute._per_worker_dataset(coordinator, strategy, config, spec, workers, 0))

        @tf.function
        def worker_step(it):
            x, y = next(it)
            return strategy.run(replica_step, args=(x, y))

        def run(steps):
            for _ in range(steps):
                coordinator.schedule(worker_step, args=(iterator,))
            coordinator.join()
        rows_per_step = args.batch_size
    else:
        iterator = iter(distribute._synchronous_dataset(strategy, config, spec, 0))

        @tf.function
        def sync_step(x, y):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

        def run(steps):
            for _ in range(steps):
                sync_step(*next(iterator))
            float(sync_step(*next(iterator)))
        rows_per_step = args.batch_size  # the global batch, split over the workers
    run(args.warmup_steps)
    started = time.perf_counter()
    run(args.steps)
    seconds = time.perf_counter() - started
    if cluster.is_chief():
        emit(measure="cluster_train_rows_per_s", strategy=name, workers=workers, batch=args.batch_size,
             steps=args.steps, rows_per_s=round(args.steps * rows_per_step / seconds),
             ms_per_step=round(1000 * seconds / args.steps, 1))


def cluster_throughput(work: Path, args, strategy: str, workers: int) -> dict | None:
    from mdrec.training.cluster import LocalCluster

    argv = [sys.executable, __file__, "--work", str(work), "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)]
    logs = work / "logs" / f"{strategy}-{workers}"
    if strategy == "parameter_server":
        cluster = LocalCluster(workers=workers, ps=2, log_dir=logs)
        launches = [("chief", 0)]
        role = "ps-chief"
    else:
        cluster = LocalCluster(workers=workers, ps=0, chief=False, log_dir=logs)
        launches = [("worker", i) for i in range(workers)]
        role = "mw-worker"
    with cluster:
        processes = [cluster.launch(argv + ["--role", role], kind, index, logs / f"{kind}{index}-run.log")
                     for kind, index in launches]
        for process in processes:
            process.wait(timeout=args.timeout)
    for line in (logs / "chief0-run.log" if strategy == "parameter_server" else logs / "worker0-run.log") \
            .read_text().splitlines():
        if line.startswith("{"):
            print(line, flush=True)
            return json.loads(line)
    emit(measure="cluster_train_rows_per_s", strategy=strategy, workers=workers, error="no result; see " + str(logs))
    return None


# ---- 3. a 10^7-row table on the parameter-server path ----------------------------------------------

def big_table(work: Path, args) -> None:
    import pandas as pd

    from mdrec.data.shard_convert import convert
    from mdrec.spec import load_spec
    from mdrec.training.cluster import LocalCluster

    big = work / "big"
    big.mkdir(exist_ok=True)
    (big / "spec.yaml").write_text(spec_text(args.big_table_rows, args.big_dim))
    frame = pd.read_parquet(work / "data" / "train.parquet")
    rng = np.random.default_rng(0)
    rows = frame.sample(n=args.big_rows, replace=True, random_state=0).reset_index(drop=True)
    # Ids from a space of 10^7 users: about as many distinct ids as rows, hashed into the table.
    rows["user_id"] = ["u" + str(v) for v in rng.integers(0, args.big_table_rows, len(rows))]
    rows.to_parquet(big / "train.parquet")
    valid = pd.read_parquet(work / "data" / "valid.parquet").head(5000)
    valid.to_parquet(big / "valid.parquet")
    started = time.perf_counter()
    convert(load_spec(big / "spec.yaml"), big / "train.parquet", big / "train_tfrecord", shards=4,
            log=lambda *_: None, overwrite=True)
    emit(measure="convert", rows=len(rows), seconds=round(time.perf_counter() - started, 1))
    run = big / "run"
    argv = [sys.executable, "-m", "mdrec.cli", "train", "--spec", str(big / "spec.yaml"),
            "--train", str(big / "train_tfrecord"), "--valid", str(big / "valid.parquet"), "--model", "star",
            "--out", str(run), "--epochs", "1", "--batch-size", str(args.batch_size),
            "--checkpoint-every", str(args.big_checkpoint_every), "--strategy", "parameter_server", "--overwrite"]
    logs = big / "logs"
    peak_total, samples = 0, 0
    with LocalCluster(workers=2, ps=2, log_dir=logs) as cluster:
        chief = cluster.launch(argv, "chief", 0, logs / "chief.log")
        started = time.perf_counter()
        peaks: dict[int, int] = {}
        while chief.poll() is None and time.perf_counter() - started < args.timeout:
            pids = cluster.pids() + [chief.pid] + _descendants(chief.pid)
            total = sum(_status(pid, "VmRSS") for pid in pids)
            peak_total, samples = max(peak_total, total), samples + 1
            for pid in pids:
                peaks[pid] = max(peaks.get(pid, 0), _status(pid, "VmHWM"))
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        if chief.poll() is None:
            chief.kill()
        names = {cluster.servers[i].pid: n for i, n in enumerate(["ps0", "ps1", "worker0", "worker1"])}
        names[chief.pid] = "chief"
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
    table_bytes = (args.big_table_rows + 1) * args.big_dim * 4
    emit(measure="big_table_parameter_server", table_rows=args.big_table_rows + 1, dim=args.big_dim,
         table_gib=round(table_bytes / 2**30, 3), with_adam_slots_gib=round(3 * table_bytes / 2**30, 3),
         train_rows=len(rows), exit_code=chief.returncode, seconds=round(seconds, 1),
         steps=sum(h.get("steps", 0) for h in history),
         epoch_seconds=history[0]["seconds"] if history else None,
         peak_rss_sum_gib=round(peak_total / 2**30, 3), samples=samples,
         peak_hwm_per_process_gib={names.get(pid, str(pid)): round(v / 2**30, 3) for pid, v in peaks.items() if v},
         peak_hwm_sum_gib=round(sum(peaks.values()) / 2**30, 3), limit_gib=24,
         sharded=metrics.get("strategy", {}).get("sharded_tables"), hashing=metrics.get("hashing"),
         best_valid_auc=metrics.get("best_valid_auc"))


# ---- main -------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a new temporary folder)")
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--train-batches", type=int, default=60, help="timed single-process training steps")
    parser.add_argument("--steps", type=int, default=60, help="timed cluster steps")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--skip-clusters", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--big-table-rows", type=int, default=10_000_000)
    parser.add_argument("--big-dim", type=int, default=16)
    parser.add_argument("--big-rows", type=int, default=300_000, help="training rows of the big-table run")
    parser.add_argument("--big-checkpoint-every", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--role", choices=("ps-chief", "mw-worker"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.role:
        cluster_role(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="mdrec-bench-input-"))
    work.mkdir(parents=True, exist_ok=True)
    emit(measure="setup", work=str(work), cores=os.cpu_count(), load_average=os.getloadavg())

    from mdrec.data import synthetic
    from mdrec.data.shard_convert import convert
    from mdrec.spec import load_spec

    (work / "spec.yaml").write_text(spec_text())
    if not (work / "data" / "train.parquet").is_file():
        synthetic.write(synthetic.generate(synthetic.preset("default", num_impressions=args.impressions)),
                        work / "data")
    spec = load_spec(work / "spec.yaml")
    for fmt in ("tfrecord", "parquet"):
        started = time.perf_counter()
        manifest = convert(spec, work / "data" / "train.parquet", work / f"train_{fmt}", fmt=fmt,
                           shards=args.shards, log=lambda *_: None, overwrite=True)
        seconds = time.perf_counter() - started
        emit(measure="convert", format=fmt, rows=manifest["rows"], shards=args.shards, seconds=round(seconds, 1),
             rows_per_s=round(manifest["rows"] / seconds))
    input_vs_training(work, args)
    if not args.skip_clusters:
        for strategy in ("parameter_server", "multi_worker"):
            results = {}
            for workers in [int(w) for w in args.workers.split(",")]:
                results[workers] = cluster_throughput(work, args, strategy, workers)
            if results.get(1) and results.get(2):
                emit(measure="cluster_scaling", strategy=strategy,
                     two_over_one=round(results[2]["rows_per_s"] / results[1]["rows_per_s"], 3),
                     note="all processes share this machine's cores")
    if not args.skip_big:
        big_table(work, args)


if __name__ == "__main__":
    main()
