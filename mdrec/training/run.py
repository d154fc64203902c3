"""A run folder: everything needed to rebuild, resume, evaluate and export a trained model.

runs/NAME/
  config.json       model, hyperparameters, data paths and their fingerprints
  spec.yaml         the spec as used (domain list fixed from training)
  transform.json    vocabularies, numeric statistics, domains (fitted on the training split)
  checkpoints/      the latest training state (model, optimizer, epoch, batch): resume point
  best/             weights of the best epoch by validation AUC
  history.json      one entry per finished epoch
  metrics.json      final metrics, OOV and missing-value counts
  catalogue.parquet retrieval runs: the candidate items, their lines and training clicks
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from mdrec.data.io import table_files
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json, atomic_write_text
from mdrec.spec import Spec, load_spec
from mdrec.training.schedule import TRAIN


@dataclass
class TrainConfig:
    """How to train; saved as config.json. Equal configs may resume each other's runs."""

    model: str = TRAIN["model"]
    train: str = ""
    valid: str | None = None
    test: str | None = None
    epochs: int = TRAIN["epochs"]
    batch_size: int = TRAIN["batch_size"]
    learning_rate: float = TRAIN["learning_rate"]
    patience: int = TRAIN["patience"]
    seed: int = TRAIN["seed"]
    checkpoint_every: int = TRAIN["checkpoint_every"]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    domain_batches: bool = False
    warm_start: str | None = None  # a trained run whose embedding rows start this one's (by ID)
    strategy: str | None = None  # tf.distribute: mirrored, multi_worker, parameter_server (None: one process)
    # Retrieval: the share of training clicks whose history keeps only the user's other lines' items,
    # so the query a cold-start user sends (a history from other lines only) is one it trained on.
    cross_line_share: float = 0.0

    def resumable_fields(self) -> dict[str, Any]:
        # Paths may be given relative or absolute; what must match is everything that shapes training.
        out = asdict(self)
        return out


def _defaults(config: Any) -> dict[str, Any]:
    """The JSON form of the default of every field of a config dataclass that has one."""
    out = {}
    for f in fields(config):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return json.loads(json.dumps(out, default=str))


def _changed_keys(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


def _change(name: str, before: Any, now: Any) -> str:
    """A changed config field as the refusal names it; a dict field (the hyperparameters) names its
    changed keys with both values, so the user sees which flag to set back."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return name
    return f"{name}: " + ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in _changed_keys(before, now))


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # file locations
    config_path = property(lambda self: self.path / "config.json")
    spec_path = property(lambda self: self.path / "spec.yaml")
    transform_path = property(lambda self: self.path / "transform.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best = property(lambda self: self.path / "best")
    history_path = property(lambda self: self.path / "history.json")
    metrics_path = property(lambda self: self.path / "metrics.json")
    catalogue_path = property(lambda self: self.path / "catalogue.parquet")

    def exists(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> "RunDir":
        if not self.exists():
            raise MdrecError("not a run folder (no config.json)", path=str(self.path),
                             hint="pass a folder written by `mdrec train --out`")
        return self

    def prepare(self, config: TrainConfig, inputs: dict[str, str | Path | None], *,
                overwrite: bool = False, hyperparameter_defaults: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Ready the folder for ``config`` reading ``inputs`` (name -> data file or folder, or the spec
        or tasks file) and return their fingerprints, for :meth:`write_config`.

        An existing run resumes only if it is this very run: the same configuration and the same bytes
        in every input it recorded. A log swapped under a killed run would otherwise resume with the old
        vocabularies and train on the new rows without a word. A different run raises, or with
        ``overwrite`` is deleted. A config field, or a key of ``hyperparameter_defaults``, that the
        run was written without counts as that value there (a run of an earlier version resumes).
        """
        fingerprints = {name: fingerprint(path) for name, path in inputs.items() if path}
        if not self.exists():
            return fingerprints
        raw = json.loads(self.config_path.read_text())
        previous = raw.get("config", {})
        current = json.loads(json.dumps(asdict(config), default=str))  # tuples as lists, as stored
        # A field added after the run was written counts as its default there.
        previous = {**_defaults(config), **previous}
        if hyperparameter_defaults is not None and isinstance(previous.get("hyperparameters"), dict):
            previous["hyperparameters"] = {**json.loads(json.dumps(dict(hyperparameter_defaults), default=str)),
                                           **previous["hyperparameters"]}
        changed = [_change(k, previous.get(k), current.get(k)) for k in _changed_keys(previous, current)]
        stored = raw.get("data_fingerprints", {})
        changed += [f"the {name} {'data' if name in ('train', 'valid', 'test') else 'file'} ({inputs[name]})"
                    for name, value in fingerprints.items() if name in stored and stored[name] != value]
        if changed:
            if not overwrite:
                raise MdrecError(f"run folder holds a run with a different configuration or inputs "
                                 f"(changed: {', '.join(changed)}); it will not resume on them",
                                 path=str(self.path), hint="use a new --out, or --overwrite to start over")
            shutil.rmtree(self.path)
        return fingerprints

    def write_config(self, config: TrainConfig, spec: Spec, fingerprints: dict[str, str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.spec_path, spec.dump())
        atomic_write_json(self.config_path, {"config": asdict(config), "data_fingerprints": fingerprints,
                                             "spec_source": spec.source})

    def read_config(self) -> tuple[TrainConfig, dict]:
        raw = json.loads(self.require().config_path.read_text())
        return TrainConfig(**raw["config"]), raw

    def load_spec(self) -> Spec:
        return load_spec(self.spec_path)

    def read_history(self) -> list[dict]:
        if self.history_path.is_file():
            return json.loads(self.history_path.read_text())
        return []

    def write_history(self, history: list[dict]) -> None:
        atomic_write_json(self.history_path, history)

    def read_metrics(self) -> dict:
        if not self.metrics_path.is_file():
            raise MdrecError("run has no metrics.json yet (training did not finish)", path=str(self.path),
                             hint="finish it with the same `mdrec train` command (it resumes), then use it")
        return json.loads(self.metrics_path.read_text())


def fingerprint(path: str | Path, max_bytes: int = 256 << 20) -> str:
    """sha256 over the files' names, sizes and contents (head and tail past ``max_bytes``): a data
    file or folder of shards, or any single file (a spec)."""
    digest = hashlib.sha256()
    files = [Path(path)] if Path(path).is_file() else table_files(path)
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}:".encode())
        with open(file, "rb") as handle:
            if size <= max_bytes:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            else:
                digest.update(handle.read(max_bytes // 2))
                handle.seek(size - max_bytes // 2)
                digest.update(handle.read())
    return digest.hexdigest()
