"""tf.distribute training: the cluster from TF_CONFIG, mirrored resume, a multi-worker run and an
in-process parameter-server cluster (a chief, 2 workers, 2 parameter servers on loopback ports)
whose checkpoints restore in one process with identical predictions.

The cluster pieces run as subprocesses with hard timeouts and are killed on the way out, so a
stuck cluster fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mdrec.data.shard_convert import convert
from mdrec.errors import MdrecError
from mdrec.spec import load_spec
from mdrec.training import distribute
from mdrec.training.cluster import LocalCluster, check_cluster
from mdrec.training.run import TrainConfig
from mdrec.workflows.evaluate import evaluate_run
from mdrec.workflows.train import train_run
from conftest import TINY_SPEC, tiny_frame

FLAT_SPEC = TINY_SPEC.replace("sequence: {item: item_id, max_length: 5}\n", "")
MDREC = [sys.executable, "-m", "mdrec.cli"]
CLUSTER_TIMEOUT = 240  # seconds for a whole cluster run; far above the ~30 s it takes here


def _tf_config(cluster, kind="chief", index=0):
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


@pytest.mark.parametrize("value, strategy, message", [
    (None, "parameter_server", "needs TF_CONFIG"),
    ("{not json", "parameter_server", "TF_CONFIG is not JSON"),
    (_tf_config({"chief": ["a:1"], "worker": ["b:1"]}), "parameter_server", "at least one ps in TF_CONFIG; it has 1 chief, 1 worker"),
    (_tf_config({"worker": ["b:1"], "ps": ["c:1"]}, "worker"), "multi_worker", "takes no 'ps' job"),
    (_tf_config({"worker": ["b:1"]}, "worker", 3), "multi_worker", "task worker:3 is not in its cluster"),
    (_tf_config({"worker": ["b:1"]}, "worker"), "ring", "unknown strategy 'ring'"),
])
def test_cluster_from_tf_config_is_checked(monkeypatch, value, strategy, message):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(MdrecError, match=message):
        check_cluster(strategy)


def test_setup_refuses_what_a_strategy_cannot_do(monkeypatch, tmp_path, tiny_splits, tiny_spec_path):
    monkeypatch.setenv("TF_CONFIG", _tf_config({"chief": ["a:1"], "worker": ["b:1"], "ps": ["c:1"]}))
    spec = load_spec(tiny_spec_path)
    (tmp_path / "flat.yaml").write_text(FLAT_SPEC)
    flat = load_spec(tmp_path / "flat.yaml")
    config = TrainConfig(model="star", train=str(tiny_splits["train"]), strategy="parameter_server")
    with pytest.raises(MdrecError, match="cannot build behaviour sequences"):
        distribute.setup(config, spec)
    with pytest.raises(MdrecError, match="reads TFRecord shards.*mdrec data convert"):
        distribute.setup(config, flat)
    with pytest.raises(MdrecError, match="trains CTR models"):
        distribute.setup(TrainConfig(model="two_tower", train="x", strategy="parameter_server"), flat)
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(MdrecError, match="partitioned normalization"):
        distribute.setup(TrainConfig(model="star", train="x", strategy="mirrored",
                                     hyperparameters={"normalization": "hidden"}), flat)


class _Crash(Exception):
    pass


def test_mirrored_matches_one_process_and_resumes_exactly(tmp_path, tiny_spec_path, tiny_splits):
    def config(**overrides):
        return TrainConfig(**{**dict(model="shared_bottom", train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                                     test=str(tiny_splits["test"]), epochs=3, batch_size=32, learning_rate=5e-3,
                                     patience=5, checkpoint_every=4,
                                     hyperparameters={"hidden": [16], "dropout": 0.0}), **overrides})

    quiet = lambda *_: None  # noqa: E731
    single = train_run(tiny_spec_path, config(), tmp_path / "single", log=quiet)

    def crash(step):
        if step == 18:  # mid-epoch 2, two steps after the step-16 checkpoint
            raise _Crash()

    with pytest.raises(_Crash):
        train_run(tiny_spec_path, config(strategy="mirrored"), tmp_path / "mirrored", log=quiet, on_batch=crash)
    messages = []
    resumed = train_run(tiny_spec_path, config(strategy="mirrored"), tmp_path / "mirrored", log=messages.append)
    assert any("resuming from" in m and "epoch 2, batch 2" in m for m in messages), messages
    assert resumed["strategy"]["name"] == "mirrored" and resumed["strategy"]["replicas"] >= 1
    for split in ("valid", "test"):  # one replica: the same numbers as the single process
        pd.testing.assert_frame_equal(pd.DataFrame(resumed["tables"][split]), pd.DataFrame(single["tables"][split]))
    with pytest.raises(MdrecError, match="changed: strategy\\)"):
        train_run(tiny_spec_path, config(), tmp_path / "mirrored", log=quiet)


# ---- clusters (subprocesses) ----------------------------------------------------------------------

@pytest.fixture
def sharded(tmp_path):
    """Train (TFRecord and Parquet shards, 4 each), valid and test splits of a learnable log."""
    (tmp_path / "flat.yaml").write_text(FLAT_SPEC)
    spec = load_spec(tmp_path / "flat.yaml")
    frame = tiny_frame(5000, seed=1)
    frame.iloc[:4000].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[4000:4500].to_csv(tmp_path / "valid.csv", index=False)
    frame.iloc[4500:].to_csv(tmp_path / "test.csv", index=False)
    for fmt in ("tfrecord", "parquet"):
        convert(spec, tmp_path / "train.csv", tmp_path / f"train_{fmt}", fmt=fmt, shards=4, log=lambda *_: None)
    return tmp_path


def _train_args(data: Path, train: str, out: Path, **extra) -> list[str]:
    args = ["train", "--spec", str(data / "flat.yaml"), "--train", str(train), "--valid", str(data / "valid.csv"),
            "--test", str(data / "test.csv"), "--model", "star", "--out", str(out), "--epochs", "4",
            "--batch-size", "64", "--learning-rate", "5e-3", "--hidden", "32,16", "--dropout", "0",
            "--patience", "5", "--checkpoint-every", "40"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*.log")))


def _wait(process: subprocess.Popen, deadline: float, logs: Path) -> int:
    try:
        return process.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"cluster run timed out after {CLUSTER_TIMEOUT} s\n{_logs(logs)}")


def _losses(run: Path) -> list[float]:
    return [entry["train_loss"] for entry in json.loads((run / "history.json").read_text())]


def test_parameter_server_cluster_trains_star_resumes_and_restores_in_one_process(sharded, monkeypatch):
    data, logs = sharded, sharded / "logs"
    monkeypatch.setenv("MDREC_MIN_SHARD_BYTES", "128")  # shard the tiny tables over both servers
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    deadline = time.time() + CLUSTER_TIMEOUT
    run = data / "run_ps"
    with LocalCluster(workers=2, ps=2, log_dir=logs) as cluster:
        # The same training in one process (on the CSV), alongside: the reference loss curve.
        single = cluster.launch(MDREC + _train_args(data, data / "train.csv", data / "run_single"), "chief", 0,
                                logs / "single.log", cluster_env=False)
        argv = MDREC + _train_args(data, data / "train_tfrecord", run, strategy="parameter_server")
        # The chief is killed (SIGKILL) once its first checkpoint is on disk, then started again.
        chief = cluster.launch(argv, "chief", 0, logs / "chief-killed.log")
        while not (run / "checkpoints" / "checkpoint").is_file():
            if chief.poll() is not None or time.time() > deadline:
                pytest.fail(f"the chief wrote no checkpoint (exit {chief.poll()})\n{_logs(logs)}")
            time.sleep(0.2)
        os.kill(chief.pid, signal.SIGKILL)
        chief.wait(timeout=30)
        assert cluster.alive(), "a worker or parameter server died with the chief"
        chief = cluster.launch(argv, "chief", 0, logs / "chief.log")
        assert _wait(chief, deadline, logs) == 0, _logs(logs)
        assert _wait(single, deadline, logs) == 0, _logs(logs)
    output = (logs / "chief.log").read_text()
    assert "resuming from" in output, output[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"]["cluster"] == {"chief": 1, "worker": 2, "ps": 2}
    sharded_tables = metrics["strategy"]["sharded_tables"]
    users = sharded_tables["user_id_embedding"]  # 40 users + the missing and OOV rows, split over 2 servers
    assert users["shards"] == 2 and sum(users["rows"]) == 42
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2, 3] and sum(h["steps"] for h in history) >= 4 * 63 - 40

    # The cluster's loss falls as the single process's does, epoch by epoch (the resumed chief's
    # first epoch holds only the steps after the checkpoint it resumed from).
    single = json.loads((data / "run_single" / "metrics.json").read_text())
    assert "strategy" not in single
    cluster_loss, single_loss = _losses(run), _losses(data / "run_single")
    assert single_loss[-1] < single_loss[0] - 0.1 and cluster_loss[-1] < single_loss[0] - 0.1
    assert all(b <= a + 0.01 for a, b in zip(cluster_loss[1:], cluster_loss[2:])), cluster_loss
    assert all(abs(c - s) < 0.06 for c, s in zip(cluster_loss[1:], single_loss[1:])), (cluster_loss, single_loss)
    assert abs(metrics["best_valid_auc"] - single["best_valid_auc"]) < 0.03, (metrics["best_valid_auc"],
                                                                              single["best_valid_auc"])

    # The cluster's weights (sharded on two servers) restore in this process: identical predictions.
    restored = evaluate_run(run, data / "test.csv")
    pd.testing.assert_frame_equal(pd.DataFrame(restored.record["table"]), pd.DataFrame(metrics["tables"]["test"]),
                                  check_exact=False, rtol=1e-9, check_like=True)


def test_multi_worker_cluster_trains_from_parquet_shards(sharded, monkeypatch):
    data, logs = sharded, sharded / "logs"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    deadline = time.time() + CLUSTER_TIMEOUT
    run = data / "run_mw"
    with LocalCluster(workers=2, ps=0, chief=False, log_dir=logs) as cluster:
        argv = MDREC + _train_args(data, data / "train_parquet", run, strategy="multi_worker", epochs=2,
                                   batch_size=256, learning_rate=2e-2)
        workers = [cluster.launch(argv, "worker", i, logs / f"worker{i}.log") for i in range(2)]
        assert [_wait(w, deadline, logs) for w in workers] == [0, 0], _logs(logs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"]["replicas"] == 2 and metrics["strategy"]["workers"] == 2
    losses = _losses(run)
    assert len(losses) == 2 and losses[1] < losses[0]
    restored = evaluate_run(run, data / "test.csv")
    pd.testing.assert_frame_equal(pd.DataFrame(restored.record["table"]), pd.DataFrame(metrics["tables"]["test"]),
                                  check_exact=False, rtol=1e-9, check_like=True)
