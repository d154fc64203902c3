"""Train and evaluate runs: the library calls behind ``mdrec train`` and ``mdrec evaluate``."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import DOMAIN, LABEL, Log, iter_logs, load_log, rare_line_warnings
from mdrec.data.pipeline import labels_of, model_inputs, streaming_dataset
from mdrec.data.sequences import add_history, add_profile
from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.evaluation.baselines.ctr import MEAN, ctr_ids, fit_ctr_baselines
from mdrec.evaluation.baselines.retrieval import fit_baselines
from mdrec.evaluation.metrics import ctr_report
from mdrec.fileio import atomic_write_json
from mdrec.models.registry import build_model, leave_one_out_profiles, model_family
from mdrec.spec import Spec, load_spec, with_domain_values
from mdrec.training.projector import encoder_tables, model_encoders, write_projector
from mdrec.training.run import RunDir, TrainConfig

Printer = Callable[[str], None]


def _resolve(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def build_run_model(config: TrainConfig, spec: Spec, transform: Transform, catalogue: Catalogue | None):
    """The run's model. A transfer run (hyperparameter ``pretrained``: a pretraining run folder)
    gets the pretrained user encoder as one more user feature, built here from the folder with the
    run's ``transfer_mode`` and ``adapter_dim``: models take the layer, never the path."""
    from mdrec.transfer.user_feature import TRANSFER_DEFAULTS, PretrainedUser
    from mdrec.workflows.pretrain import load_pretrained

    hyperparameters = dict(config.hyperparameters)
    pretrained = hyperparameters.pop("pretrained", None)
    transfer = {k: hyperparameters.pop(k, default) for k, default in TRANSFER_DEFAULTS.items()}
    user_feature = None
    if pretrained:
        source = load_pretrained(pretrained)
        try:
            user_feature = PretrainedUser(source, transfer["transfer_mode"], transfer["adapter_dim"],
                                          name="pretrained_user")
        except ValueError as exc:
            raise MdrecError(f"model '{config.model}': {exc}") from None
    return build_model(config.model, spec, transform, catalogue=catalogue, user_feature=user_feature,
                       **hyperparameters)


def _histories(spec: Spec, logs: list[Log], train: int | None = 0, *, folds: bool = True) -> list[np.ndarray | None]:
    """Behaviour sequences for several splits.

    With time, computed over their union so that an event's history may use any earlier event
    (from any split) but never one at or after its own time. Without time (profiles), every split's
    history comes from the training split ``logs[train]`` alone (its own rows read the other
    profile fold, or with ``folds=False`` every item but their own); with ``train`` None, each log
    profiles itself.
    """
    if spec.sequence is None:
        return [None] * len(logs)
    if spec.time is None:
        return [add_profile(logs[train] if train is not None else log, log, spec, folds=folds) for log in logs]
    combined = Log.concat(logs)
    history = add_history(combined, spec)
    out, start = [], 0
    for log in logs:
        out.append(history[start:start + len(log)])
        start += len(log)
    return out


def train_run(spec_path: str | Path, config: TrainConfig, out: str | Path, *, overwrite: bool = False,
              log: Printer = print, on_batch: Callable[[int], None] | None = None) -> dict:
    """Train ``config.model`` on ``config.train``; resume if ``out`` holds the same run."""
    from mdrec.models.registry import resolved_hyperparameters
    from mdrec.training.loop import (InMemoryEpochs, StreamingEpochs, auc_validation, fit, predict, training_sample,
                                     restore_weights)

    run = RunDir(out)
    spec = load_spec(spec_path)
    config.hyperparameters = resolved_hyperparameters(config.model, config.hyperparameters)
    config.train = _resolve(config.train)
    config.valid = _resolve(config.valid)
    config.test = _resolve(config.test)
    config.warm_start = _resolve(config.warm_start)
    if config.cross_line_share and model_family(config.model) != "retrieval":
        raise MdrecError(f"--cross-line-share shapes a retrieval model's queries; '{config.model}' is a CTR model",
                         hint="drop the flag, or train --model two_tower")
    if config.hyperparameters.get("pretrained"):
        from mdrec.transfer.user_feature import TRANSFER_DEFAULTS

        config.hyperparameters["pretrained"] = _resolve(config.hyperparameters["pretrained"])
        config.hyperparameters = {**TRANSFER_DEFAULTS, **config.hyperparameters}
    dist, resume_from = None, None
    if config.strategy:  # tf.distribute (mdrec.training.distribute); a ps/worker task serves and never returns
        from mdrec.training import distribute

        dist = distribute.setup(config, spec)
        if not dist.chief:  # a multi-worker non-chief resumes from the chief's checkpoints, writes to scratch
            resume_from, run = run.checkpoints, RunDir(dist.scratch)
    streaming = config.stream or (dist is not None and dist.files_per_worker)
    fingerprints = run.prepare(config, {"train": config.train, "valid": config.valid, "test": config.test,
                                        "spec": spec_path}, overwrite=overwrite)
    log(f"reading {config.train}" + (" (streaming)" if streaming else ""))
    if streaming:
        if config.domain_batches:
            raise MdrecError("--domain-batches needs the training log in memory; drop --stream")
        if spec.sequence is not None:
            raise MdrecError("--stream cannot build behaviour sequences (they need each user's whole past)",
                             path=spec.source, hint="train in memory, or remove `sequence` from the spec")
        # Two bounded-memory passes: one to fit the vocabularies, then one per epoch to train.
        train_log = next(iter_logs(config.train, spec, chunk_rows=4096))  # a sample: build and baseline
        transform = Transform.load(run.transform_path) if run.transform_path.is_file() \
            else Transform.fit(iter_logs(config.train, spec), spec)
    else:
        train_log = load_log(config.train, spec)
        transform = Transform.load(run.transform_path) if run.transform_path.is_file() \
            else Transform.fit(train_log, spec)
    for warning in rare_line_warnings(train_log, spec) if not streaming else []:
        log(warning)
    spec = with_domain_values(spec, transform.domains)
    valid_log = load_log(config.valid, spec, known_domains=transform.domains) if config.valid else None
    test_log = load_log(config.test, spec, known_domains=transform.domains) if config.test else None
    named = {n: split for n, split in (("train", train_log), ("valid", valid_log), ("test", test_log))
             if split is not None}
    histories = {"train": None, "valid": None, "test": None}
    folds = not leave_one_out_profiles(config.model, config.hyperparameters)
    histories.update(zip(named, _histories(spec, list(named.values()), folds=folds)))

    from mdrec.layers.item_encoders import needs_catalogue

    retrieval = model_family(config.model) == "retrieval"
    catalogue = None
    if retrieval or needs_catalogue(spec, config.hyperparameters):  # content items: item -> content table
        if streaming:
            raise MdrecError("--stream is for CTR models; a retrieval model trains on the clicks in memory"
                             if retrieval else f"{'--stream' if config.stream else '--strategy ' + str(config.strategy)}"
                             " cannot build the item catalogue a content item encoder reads (the content "
                             "history, the frozen text); train in memory in one process")
        catalogue = Catalogue.load(run.catalogue_path, spec, transform.domains) if run.catalogue_path.is_file() \
            else Catalogue.from_log(train_log, spec, transform.domains)
    with dist.scope() if dist is not None else contextlib.nullcontext():  # variables, tables: the strategy's
        model = build_run_model(config, spec, transform, catalogue)  # bad parameters fail here
    if not run.exists():
        run.write_config(config, spec, fingerprints)
        transform.save(run.transform_path)
        if catalogue is not None:
            catalogue.save(run.catalogue_path)
    if retrieval:
        return _train_retrieval(model, run, config, spec, transform, catalogue,
                                dict(named), histories, log=log, on_batch=on_batch)

    train_inputs = model_inputs(train_log, spec, histories["train"])
    if streaming:
        train = StreamingEpochs(lambda epoch: streaming_dataset(
            config.train, spec, config.batch_size, known_domains=transform.domains,
            shuffle_buffer=16 * config.batch_size, seed=config.seed + epoch), train_inputs)
    else:
        train = InMemoryEpochs(train_inputs, labels_of(train_log), config.batch_size, config.seed,
                               domains=train_log.frame[DOMAIN].to_numpy(dtype=object) if config.domain_batches else None)
    validate = None
    if valid_log is not None:
        sample = training_sample(train_inputs, labels_of(train_log), train_log.domains, config.seed)
        validate = auc_validation(model, model_inputs(valid_log, spec, histories["valid"]), labels_of(valid_log),
                                  valid_log.domains, train=sample)
    warm = _warm_start_hook(config, log)
    steps = distribute.StrategySteps(dist, config, spec, train, rows=transform.rows) if dist is not None else None
    result = fit(model, run, config, train, validate, log=log, on_batch=on_batch, after_build=warm, steps=steps,
                 resume_from=resume_from)
    restore_weights(model, run.best)
    if dist is None or dist.chief:
        write_projector(run.path, encoder_tables(model_encoders(model), spec,
                                                 iter_logs(config.train, spec) if streaming else [train_log]))

    metrics: dict = {"model": config.model, "best_epoch": result.best_epoch,
                     "best_valid_auc": result.best_score, "epochs_run": result.epochs_run,
                     "stopped_early": result.stopped_early, "train_rows": transform.rows,
                     "missing_values": {}, "oov": {}, "tables": {}, **_transfer_metrics(model, warm)}
    if dist is not None:
        metrics["strategy"] = {**dist.describe(), "sharded_tables": distribute.sharding_report(model)}
    if transform.hashed:  # hashed ids: buckets, distinct training ids, collisions
        metrics["hashing"] = transform.hashed
    # The sanity rows (user+item mean, first-order logistic): fitted on the same training split,
    # their settings chosen on the validation split.
    train_missing: dict[str, int] = {}

    def id_chunks():
        for part in (iter_logs(config.train, spec) if streaming else [train_log]):
            for key, value in part.missing.items():
                train_missing[key] = train_missing.get(key, 0) + value
            yield ctr_ids(part, spec)

    splits = {name: (split, model_inputs(split, spec, histories[name]))
              for name, split in (("valid", valid_log), ("test", test_log)) if split is not None}
    scored = {name: predict(model, inputs) for name, (_, inputs) in splits.items()}
    if getattr(model, "calibration", None) is not None:
        metrics["calibration"] = _calibrate(model, run, spec, transform, splits, scored, log)
    fitted = fit_ctr_baselines(id_chunks(), ctr_ids(valid_log, spec) if valid_log is not None else None)
    mean, extra = fitted[0], fitted[1:]
    metrics["missing_values"]["train"] = train_missing
    metrics["baseline"] = {"name": mean.name.removeprefix("baseline: "), "alpha": mean.settings["alpha"],
                           "validation_auc": mean.report()["validation_auc"], "tables": {}}
    metrics["baselines"] = {b.name: {**b.report(), "tables": {}} for b in extra}
    for name, split in (("valid", valid_log), ("test", test_log)):
        if split is None:
            continue
        metrics["tables"][name] = _table_records(_report(spec, split, scored[name]))
        ids = ctr_ids(split, spec)
        metrics["baseline"]["tables"][name] = _table_records(_report(spec, split, mean.predict(*ids[:3])))
        for b in extra:
            if not b.skipped:
                metrics["baselines"][b.name]["tables"][name] = _table_records(_report(spec, split, b.predict(*ids[:3])))
        metrics["oov"][name] = transform.oov_counts(split, spec, histories[name])
        metrics["missing_values"][name] = split.missing
    atomic_write_json(run.metrics_path, metrics)
    if dist is not None:
        dist.finish()
    return metrics


def _calibrate(model, run: RunDir, spec: Spec, transform: Transform, splits: dict[str, tuple[Log, dict]],
               scored: dict[str, np.ndarray], log: Printer) -> dict:
    """Fit the model's per-line calibration on the validation rows, keep it in the best weights,
    and rescore every split (``scored``: split -> probabilities, replaced in place). Returns the
    report: each line's pair and each split's table before the step."""
    from mdrec.training.calibration import fit_line_calibration
    from mdrec.training.loop import predict, save_weights

    if "valid" not in splits:
        log("calibration: skipped (no --valid split to fit it on)")
        return {"method": "platt per line", "skipped": "no validation split"}
    valid_log = splits["valid"][0]
    index = {name: i for i, name in enumerate(transform.domains)}
    lines = np.array([index[d] for d in valid_log.domains], dtype=np.int64)
    fits = fit_line_calibration(model.calibration, scored["valid"], labels_of(valid_log), lines, transform.domains)
    save_weights(model, run.best)
    report = {"method": "platt per line", "fitted_on": "valid",
              "lines": {line: fit.report() for line, fit in fits.items()}, "before": {}}
    for name, (split, inputs) in splits.items():
        before = _report(spec, split, scored[name])
        scored[name] = predict(model, inputs)
        after = _report(spec, split, scored[name])
        report["before"][name] = _table_records(before)
        log(f"calibration on {name} (mean predicted / observed click rate), before -> after the per-line "
            "Platt step fitted on valid: " + ", ".join(f"{line} {before.loc[line, 'calibration']:.3f} -> "
                                                      f"{after.loc[line, 'calibration']:.3f}" for line in after.index))
    for line, fit in fits.items():
        if fit.kept:
            log(f"calibration of line {line} left as it was: {fit.kept}")
    return report


def _warm_start_hook(config: TrainConfig, log: Printer):
    """fit's after_build for ``config.warm_start`` (None without one); keeps its row counts."""
    if not config.warm_start:
        return None
    from mdrec.transfer.warm_start import warm_start

    def hook(model) -> None:
        hook.report = warm_start(model, config.warm_start)
        log("warm start from " + config.warm_start + ": " + ", ".join(
            f"{t} {r['copied']:,} rows copied, {r['fresh']:,} fresh" for t, r in hook.report.items()))
    hook.report = {}
    return hook


def _transfer_metrics(model, warm) -> dict:
    """What a run transferred: ID warm-start row counts; the pretrained encoder's trainable share."""
    out: dict = {}
    if warm is not None:
        out["warm_start"] = warm.report
    user_feature = getattr(getattr(model, "encoder", None), "user_feature", None)
    if user_feature is not None:
        from mdrec.transfer.user_feature import trainable_share

        out["transfer"] = {"mode": user_feature.mode, "source_users": user_feature.known_users,
                           **trainable_share(user_feature.encoder)}
    return out


def _train_retrieval(model, run: RunDir, config: TrainConfig, spec: Spec, transform: Transform,
                     catalogue, logs: dict[str, Log], histories: dict, *, log: Printer,
                     on_batch: Callable[[int], None] | None) -> dict:
    from mdrec.training import retrieval
    from mdrec.training.loop import InMemoryEpochs, fit, restore_weights

    history = histories["train"]
    if config.cross_line_share:
        if history is None:
            raise MdrecError("--cross-line-share reshapes the behaviour sequence, and the spec has none",
                             path=spec.source, hint="add `sequence: {item: item_id, max_length: 50}` to the spec")
        history = retrieval.cross_line_histories(history, logs["train"].domains, catalogue, config.cross_line_share,
                                                 config.seed)
    inputs, labels, domains = retrieval.train_inputs(logs["train"], spec, history)
    if len(labels) == 0:
        raise MdrecError("the training data has no clicks (label 1) for a retrieval model to learn from",
                         path=config.train)
    train = InMemoryEpochs(inputs, labels, config.batch_size, config.seed,
                           domains=domains if config.domain_batches else None)
    validate = None
    if "valid" in logs:
        validate = retrieval.recall_validation(model, spec, catalogue, logs["valid"], histories["valid"],
                                               [logs["train"]], batch_size=config.batch_size)
    metric = f"valid_{retrieval.EARLY_STOPPING}"
    warm = _warm_start_hook(config, log)
    result = fit(model, run, config, train, validate, metric=metric, log=log, on_batch=on_batch, after_build=warm)
    restore_weights(model, run.best)
    write_projector(run.path, encoder_tables(model_encoders(model), spec, [logs["train"]]))
    metrics: dict = {"model": config.model, "family": "retrieval", "best_epoch": result.best_epoch,
                     f"best_{metric}": result.best_score, "epochs_run": result.epochs_run,
                     "stopped_early": result.stopped_early, "train_rows": transform.rows,
                     "train_clicks": int(len(labels)), "catalogue_items": len(catalogue),
                     "catalogue_per_line": dict(zip(catalogue.domains, catalogue.membership.sum(1).tolist())),
                     "tables": {}, "baseline": {"name": retrieval.POPULARITY, "tables": {}}, "counts": {},
                     "oov": {}, "missing_values": {}, **_transfer_metrics(model, warm)}
    fitted = fit_baselines(spec, catalogue, logs["train"], logs.get("valid"), log=log)
    metrics["baselines"] = {b.name: {**b.report(), "tables": {}} for b in fitted}
    seen = [logs["train"]]
    for name in ("valid", "test"):
        if name not in logs:
            continue
        tables = retrieval.retrieval_tables(model, spec, catalogue, logs[name], histories[name], seen,
                                            baselines=fitted)
        metrics["tables"][name] = _table_records(tables["full"]["model"])
        metrics["baseline"]["tables"][name] = _table_records(tables["full"][retrieval.POPULARITY])
        for b in fitted:
            if b.name in tables["full"]:
                metrics["baselines"][b.name]["tables"][name] = _table_records(tables["full"][b.name])
        metrics["counts"][name] = tables["counts"]
        metrics["oov"][name] = transform.oov_counts(logs[name], spec, histories[name])
        metrics["missing_values"][name] = logs[name].missing
        seen = seen + [logs[name]]  # the test split's ranking also removes validation clicks
    atomic_write_json(run.metrics_path, metrics)
    return metrics


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
    history = _histories(spec, logs, train)[-1] if spec.sequence else None
    return log_, history, note, context


def restore_trained(model, run: RunDir, inputs: dict[str, np.ndarray]) -> None:
    """Create the model's variables and load the run's best weights into them."""
    from mdrec.training.loop import build, restore_weights

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


@dataclass
class CtrEvaluation:
    """A CTR run scored on a log (:func:`evaluate_run`)."""

    record: dict[str, Any]               # JSON-ready (what --out writes): run, data, rows, table, oov, ...
    table: pd.DataFrame                  # per-line metrics, one row per line and "ALL"
    baselines: dict[str, pd.DataFrame]   # sanity row name -> its per-line table (empty: see record's note)
    predictions: pd.DataFrame            # label, score, domain per row: what reliability diagrams bin


@dataclass
class RetrievalEvaluation:
    """A retrieval run ranked on a log's clicks (:func:`evaluate_retrieval_run`)."""

    record: dict[str, Any]               # JSON-ready, what --out writes
    tables: dict[str, Any]               # "full" (and "sampled"): row name -> per-line table; "counts"


def evaluate_run(run_path: str | Path, data: str | Path, *, out: str | Path | None = None,
                 cache: dict | None = None) -> CtrEvaluation | RetrievalEvaluation:
    """Metrics of a trained run on ``data``: per-domain table, OOV and missing counts.

    ``cache``: see :func:`restore_for` (``mdrec compare`` shares one across its runs).
    """
    from mdrec.training.loop import predict

    if model_family(RunDir(run_path).read_config()[0].model) == "retrieval":
        return evaluate_retrieval_run(run_path, data, out=out)
    r = restore_for(run_path, data, cache=cache)
    scores = predict(r.model, r.inputs)
    table = _report(r.spec, r.log, scores)
    result = {"run": str(r.run.path), "data": str(data), "rows": len(r.log), "table": _table_records(table),
              "oov": r.transform.oov_counts(r.log, r.spec, r.history), "missing_values": r.log.missing}
    if r.note:
        result["sequence_context"] = r.note
    baselines, note = ctr_baseline_tables(r.run, r.config, r.spec, r.log, cache=cache)
    result["baselines"] = {name: _table_records(t) for name, t in baselines.items()}
    if note:
        result["baselines_note"] = note
    if out:
        atomic_write_json(out, result)
    predictions = pd.DataFrame({"label": r.log.frame[LABEL].to_numpy(), "score": scores,
                                "domain": r.log.frame[DOMAIN].to_numpy(dtype=object)})
    return CtrEvaluation(result, table, baselines, predictions)


def ctr_baseline_tables(run: RunDir, config: TrainConfig, spec: Spec, log_: Log, *, cache: dict | None = None
                        ) -> tuple[dict[str, pd.DataFrame], str | None]:
    """The CTR sanity rows on ``log_`` (name -> per-line table), or ({}, why not)."""
    fitted, note = ctr_baselines_of(run, config, spec, cache=cache)
    ids = ctr_ids(log_, spec)
    return {b.name: _report(spec, log_, b.predict(*ids[:3])) for b in fitted if not b.skipped}, note


def ctr_baselines_of(run: RunDir, config: TrainConfig, spec: Spec, *, cache: dict | None = None) -> tuple[list, str | None]:
    """A CTR run's sanity rows refitted on its training file with the settings it chose on
    validation (searched again on its validation file for runs that recorded none), or ([], why not)."""
    if not config.train or not Path(config.train).exists():
        return [], f"no baseline rows: the run's training file {config.train} is not there"
    chosen = _chosen_baseline_settings(run) or {}
    key = ("ctr baselines", config.train, json.dumps(chosen, sort_keys=True))
    if cache is not None and key in cache:
        return cache[key], None
    train = load_log(config.train, spec)
    valid = load_log(config.valid, spec) if config.valid and Path(config.valid).exists() else None
    fitted = fit_ctr_baselines([ctr_ids(train, spec)], ctr_ids(valid, spec) if valid is not None else None,
                               chosen=chosen or None)
    if cache is not None:
        cache[key] = fitted
    return fitted, None


def evaluate_retrieval_run(run_path: str | Path, data: str | Path, *, out: str | Path | None = None,
                           sampled: bool = False, negatives: int = 999, seed: int = 0,
                           baselines: bool = True) -> RetrievalEvaluation:
    """Recall/NDCG/HR@K per line of a retrieval run on ``data``'s clicks, with the popularity row
    and (``baselines``) ItemKNN and EASE refitted on the run's training clicks with the settings
    the run chose on validation.

    The run's training clicks (and validation clicks, unless ``data`` is the validation split)
    are removed from each user's ranking. ``sampled`` adds the 1 + ``negatives`` protocol.
    """
    from mdrec.training import retrieval

    r = restore_for(run_path, data, need_context=True)
    seen = r.seen_clicks()
    fitted = fit_baselines(r.spec, r.model.catalogue, r.context["train"], r.context.get("valid"),
                           chosen=_chosen_baseline_settings(r.run)) if baselines else []
    tables = retrieval.retrieval_tables(r.model, r.spec, r.model.catalogue, r.log, r.history, seen,
                                        sampled=sampled, negatives=negatives, seed=seed, baselines=fitted)
    result = {"run": str(r.run.path), "data": str(data), "family": "retrieval", "rows": len(r.log),
              "counts": tables["counts"], "oov": r.transform.oov_counts(r.log, r.spec, r.history),
              "missing_values": r.log.missing, "sequence_context": r.note,
              "removed_from_ranking": [n for n in ("train", "valid") if n in r.context],
              "full": {name: _table_records(t) for name, t in tables["full"].items()}}
    if sampled:
        result["sampled"] = {name: _table_records(t) for name, t in tables["sampled"].items()}
        result["sampled_protocol"] = {"negatives": negatives, "seed": seed}
    result["baselines"] = {b.name: b.report() for b in fitted}
    if out:
        atomic_write_json(out, result)
    return RetrievalEvaluation(result, tables)


def _chosen_baseline_settings(run: RunDir) -> dict[str, dict] | None:
    """The sanity rows' settings a run chose on its validation split, by row name (the CTR mean's
    alpha included); None before they were recorded: the search then runs again on the run's
    validation file."""
    if not run.metrics_path.is_file():
        return None
    metrics = run.read_metrics()
    chosen = {MEAN: {"alpha": metrics["baseline"]["alpha"]}} if "alpha" in metrics.get("baseline", {}) else {}
    chosen.update({name: b["settings"] for name, b in metrics.get("baselines", {}).items() if "skipped" not in b})
    return chosen or None


def _report(spec: Spec, log: Log, scores: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"label": log.frame[LABEL].to_numpy(), "score": scores,
                          "domain": log.frame[DOMAIN].to_numpy(dtype=object),
                          "user": log.frame[spec.user_id.name].to_numpy(dtype=object)})
    return ctr_report(frame, label="label", score="score", domain="domain", user="user")


def _table_records(table: pd.DataFrame) -> list[dict]:
    return table.reset_index().to_dict(orient="records")


def table_from_records(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(records).set_index("domain")


def retrieval_rows(metrics: dict, split: str) -> dict[str, pd.DataFrame]:
    """A retrieval run's tables on ``split`` by row name: "model", popularity, then every fitted
    baseline (ItemKNN, EASE; runs trained before they existed have popularity only)."""
    from mdrec.training.retrieval import POPULARITY

    tables = {"model": table_from_records(metrics["tables"][split]),
              POPULARITY: table_from_records(metrics["baseline"]["tables"][split])}
    for name, baseline in metrics.get("baselines", {}).items():
        if split in baseline.get("tables", {}):
            tables[name] = table_from_records(baseline["tables"][split])
    return tables


def versus_baseline(metrics: dict, split: str) -> pd.DataFrame:
    """Model and sanity baselines side by side: AUC per domain, then overall AUC, GAUC, logloss."""
    rows = {}
    sources = [(metrics["model"], metrics["tables"][split]),
               ("baseline: " + metrics["baseline"]["name"], metrics["baseline"]["tables"][split])]
    sources += [(name, b["tables"][split]) for name, b in metrics.get("baselines", {}).items()
                if split in b.get("tables", {})]
    for label, records in sources:
        table = table_from_records(records)
        row = {f"auc[{d}]": table.loc[d, "auc"] for d in table.index if d != "ALL"}
        row.update({"auc": table.loc["ALL", "auc"], "gauc": table.loc["ALL", "gauc"],
                    "logloss": table.loc["ALL", "logloss"]})
        rows[label] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "model"
    return frame
