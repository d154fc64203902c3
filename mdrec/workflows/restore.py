"""Finished runs loaded back: the model with its best weights, and a log validated against the
run's spec with the behaviour sequences its own splits give (evaluation, export, A/B, index)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import Log, load_log
from mdrec.data.pipeline import model_inputs
from mdrec.data.sequences import split_histories
from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.models.registry import model_family
from mdrec.spec import Spec
from mdrec.training.run import RunDir, TrainConfig
from mdrec.workflows.train import build_run_model


def load_trained(run_path: str | Path):
    """(run, config, spec, transform, model with best weights) of a finished run."""
    run = RunDir(run_path).require()
    run.read_metrics()  # a run killed before it finished: its best/ may hold an early epoch's weights
    config, _ = run.read_config()
    spec = run.load_spec()
    transform = Transform.load(run.transform_path)
    if not run.best.exists():
        raise MdrecError("run has no trained weights yet (best/ is missing)", path=str(run.path),
                         hint="finish training with the same `mdrec train` command")
    catalogue = Catalogue.load(run.catalogue_path, spec, transform.domains) \
        if model_family(config.model) == "retrieval" or run.catalogue_path.is_file() else None
    model = build_run_model(config, spec, transform, catalogue)
    return run, config, spec, transform, model


def evaluation_log(config: TrainConfig, spec: Spec, transform: Transform, data: str | Path
                   ) -> tuple[Log, np.ndarray | None, dict | None]:
    """``data`` validated against a run's spec, with its behaviour sequences.

    Sequences use the run's own train/valid/test files as earlier context when they still exist
    (events strictly before each event only). Returns (log, history, context note).
    """
    log_, history, note, _ = evaluation_context(config, spec, transform, data, need_context=False)
    return log_, history, note


def evaluation_context(config: TrainConfig, spec: Spec, transform: Transform, data: str | Path,
                        need_context: bool) -> tuple[Log, np.ndarray | None, dict | None, dict[str, Log]]:
    """(log, history, context note, the run's other split logs by name); the split logs are read
    when sequences need them or when ``need_context`` (retrieval removes seen clicks)."""
    log_ = load_log(data, spec, known_domains=transform.domains)
    if spec.sequence is None and not need_context:
        return log_, None, None, {}
    target = str(Path(data).resolve())
    named = [(n, p) for n, p in (("train", config.train), ("valid", config.valid), ("test", config.test))
             if p and p != target]
    present = [(n, p) for n, p in named if Path(p).exists()]
    note = {"context_files": [p for _, p in present],
            "missing_context_files": sorted({p for _, p in named} - {p for _, p in present})}
    context = {n: load_log(p, spec, known_domains=transform.domains) for n, p in present}
    logs = list(context.values()) + [log_]
    train = list(context).index("train") if "train" in context else None  # profiles: training clicks
    history = split_histories(spec, logs, train)[-1] if spec.sequence else None
    return log_, history, note, context


def restore_trained(model, run: RunDir, inputs: dict[str, np.ndarray]) -> None:
    """Create the model's variables and load the run's best weights into them."""
    from mdrec.training.inference import build, restore_weights

    build(model, inputs)
    restore_weights(model, run.best)


@dataclass
class Restored:
    """A trained run ready to score ``log``: the model holds its best weights; ``inputs`` are the
    raw model inputs of ``log`` (with its behaviour sequences); ``context``: the run's other splits
    (read when sequences need them or when asked for)."""

    run: RunDir
    config: TrainConfig
    spec: Spec
    transform: Transform
    model: object
    log: Log
    history: np.ndarray | None
    note: dict | None
    context: dict[str, Log]
    inputs: dict[str, np.ndarray]

    def seen_clicks(self) -> list[Log]:
        """The splits whose clicks a retrieval ranking removes: training, and validation unless it
        is the evaluated log."""
        if "train" not in self.context:
            raise MdrecError("the run's training file is needed to remove the users' training clicks from "
                             "the ranking, and it is not there", path=self.config.train,
                             hint="restore the training file at that path")
        return [self.context[n] for n in ("train", "valid") if n in self.context]


def restore_for(run_path: str | Path, data: str | Path, *, cache: dict | None = None,
                need_context: bool = False) -> Restored:
    """Load a finished run and ``data`` validated against its spec.

    ``cache`` (any dict, shared across calls) keeps the validated log, its sequences and context,
    so scoring several runs of one spec on one log reads and checks the files once.
    """
    run, config, spec, transform, model = load_trained(run_path)
    key = (spec.dump(), tuple(transform.domains), config.train, config.valid, config.test,
           str(Path(data).resolve()), need_context)
    if cache is not None and key in cache:
        log_, history, note, context = cache[key]
    else:
        log_, history, note, context = evaluation_context(config, spec, transform, data, need_context)
        if cache is not None:
            cache[key] = (log_, history, note, context)
    inputs = model_inputs(log_, spec, history)
    restore_trained(model, run, inputs)
    return Restored(run, config, spec, transform, model, log_, history, note, context, inputs)
