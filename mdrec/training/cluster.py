"""The cluster a distributed run joins: TF_CONFIG read and checked, this process's task, the
TensorFlow servers that workers and parameter servers host, and :class:`LocalCluster`, a whole
cluster on this machine's loopback (the demo, the tests and the benches use it).

``python -m mdrec.training.cluster serve`` hosts a worker's or parameter server's task (named by
TF_CONFIG) until killed.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError

STRATEGIES = ("mirrored", "multi_worker", "parameter_server")


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
                    [sys.executable, "-m", "mdrec.training.cluster", "serve"], env=self.env(kind, index),
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


if __name__ == "__main__":  # python -m mdrec.training.cluster serve
    if sys.argv[1:] == ["serve"]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        serve()
    else:
        print("usage: python -m mdrec.training.cluster serve   (with TF_CONFIG naming a worker or ps task)",
              file=sys.stderr)
        sys.exit(2)
