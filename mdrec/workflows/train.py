"""Training a run: the library call behind ``mdrec train`` (CTR and retrieval models, in one
process or under tf.distribute), and the model a run's config builds.

Scoring a finished run lives in :mod:`mdrec.workflows.evaluate`, loading one back in
:mod:`mdrec.workflows.restore`, the per-line tables in :mod:`mdrec.workflows.run_tables`."""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypedDict

import numpy as np

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import Log, iter_logs, load_log, rare_line_warnings
from mdrec.data.pipeline import labels_of, model_inputs, streaming_dataset
from mdrec.data.sequences import split_histories
from mdrec.data.transform import Transform
from mdrec.errors import MdrecError
from mdrec.evaluation.baselines import ctr as ctr_baselines
from mdrec.evaluation.baselines.ctr import CtrBaseline, ctr_ids, fit_ctr_baselines
from mdrec.evaluation.baselines.retrieval import fit_baselines
from mdrec.fileio import atomic_write_json
from mdrec.models.registry import build_model, leave_one_out_profiles, model_family
from mdrec.spec import Spec, load_spec, with_domain_values
from mdrec.training.projector import encoder_tables, model_encoders, write_projector
from mdrec.training.run import RunDir, TrainConfig
from mdrec.workflows.run_tables import ctr_table, table_records

Printer = Callable[[str], None]


def _resolve(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def build_run_model(config: TrainConfig, spec: Spec, transform: Transform, catalogue: Catalogue | None):
    """The run's model. A transfer run (hyperparameter ``pretrained``: a pretraining run folder)
    gets the pretrained user encoder as one more user feature, built here from the folder with the
    run's ``transfer_mode`` and ``adapter_dim``: models take the layer, never the path."""
    from mdrec.transfer.settings import TRANSFER_DEFAULTS
    from mdrec.transfer.user_feature import PretrainedUser
    from mdrec.workflows.pretrained import load_pretrained

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


# What train_run returns and writes to metrics.json. Per-line tables are records (one per line and
# "ALL"; read back with mdrec.workflows.run_tables.table_from_records), by split name.
TrainMetrics = TypedDict("TrainMetrics", {
    "model": str,
    "family": str,                          # "retrieval" (CTR runs leave it out)
    "best_epoch": int,
    "best_valid_auc": float,                # CTR: the early-stopping score
    "best_valid_recall@50": float,          # retrieval: the early-stopping score
    "epochs_run": int,
    "stopped_early": bool,
    "train_rows": int,
    "tables": dict[str, list[dict]],        # the model's table per split
    "baseline": dict[str, Any],             # the first sanity row: name, settings, its tables per split
    "baselines": dict[str, dict[str, Any]],  # the other sanity rows: report (settings) and tables per split
    "missing_values": dict[str, Any],
    "oov": dict[str, Any],
    "calibration": dict[str, Any],          # CTR models with a calibration step: the fits and the tables before
    "grades": str,                          # CTR, a graded label: what the model trained on (every grade or the click)
    "strategy": dict[str, Any],             # --strategy runs: the cluster and the sharded tables
    "hashing": dict[str, Any],              # hashed ids: buckets, distinct training ids, collisions
    "warm_start": dict[str, Any],           # --warm-start: rows copied and fresh per table
    "transfer": dict[str, Any],             # a pretrained user feature: mode, known users, trainable share
    "train_clicks": int,                    # retrieval: the positive pairs trained on
    "catalogue_items": int,
    "catalogue_per_line": dict[str, int],
    "counts": dict[str, Any],               # retrieval: users and clicks ranked per split
}, total=False)


@dataclass
class _Splits:
    """What a run trains and scores on, read and checked once."""

    spec: Spec                                # with the line values the transform knows
    transform: Transform
    logs: dict[str, Log]                      # "train" (a first chunk when streaming), "valid", "test"
    histories: dict[str, np.ndarray | None]   # behaviour sequences per split (None without `sequence`)
    catalogue: Catalogue | None               # retrieval models and content item encoders
    streaming: bool


def train_run(spec_path: str | Path, config: TrainConfig, out: str | Path, *, overwrite: bool = False,
              log: Printer = print, on_batch: Callable[[int], None] | None = None,
              baselines_from: Mapping[str, Mapping[str, Any]] | None = None,
              sanity_rows: bool = True) -> TrainMetrics:
    """Train ``config.model`` on ``config.train``; resume if ``out`` holds the same run.

    Returns the run's metrics (also written to ``out/metrics.json``): the model's table on the
    validation and test splits beside the sanity rows fitted on the training split.
    ``baselines_from``: the ``baselines`` of an earlier retrieval run's metrics on the same split
    files; their settings (and the validation grids that chose them) are reused instead of searched
    again, and tables they carry for every split are copied instead of ranked again (they do not
    depend on the model). ``sanity_rows=False``: a retrieval run ranks with the model and
    popularity only (``baselines`` is empty), for a caller that fits the sanity rows once itself
    (the cold-start table); fitting them costs minutes per run on a large catalogue.
    """
    spec = load_spec(spec_path)
    _settle_config(config)
    dist, resume_from, run = None, None, RunDir(out)
    if config.strategy:  # tf.distribute (mdrec.training.distribute); a ps/worker task serves and never returns
        from mdrec.training import distribute

        dist = distribute.setup(config, spec)
        if not dist.chief:  # a multi-worker non-chief resumes from the chief's checkpoints, writes to scratch
            resume_from, run = run.checkpoints, RunDir(dist.scratch)
    streaming = config.stream or (dist is not None and dist.files_per_worker)
    fingerprints = run.prepare(config, {"train": config.train, "valid": config.valid, "test": config.test,
                                        "spec": spec_path}, overwrite=overwrite)
    data = _read_splits(run, config, spec, streaming, log)
    with dist.scope() if dist is not None else contextlib.nullcontext():  # variables, tables: the strategy's
        model = build_run_model(config, data.spec, data.transform, data.catalogue)  # bad parameters fail here
    if not run.exists():
        run.write_config(config, data.spec, fingerprints)
        data.transform.save(run.transform_path)
        if data.catalogue is not None:
            data.catalogue.save(run.catalogue_path)
    if model_family(config.model) == "retrieval":
        return _train_retrieval(model, run, config, data, log=log, on_batch=on_batch, baselines_from=baselines_from,
                                sanity_rows=sanity_rows)
    metrics = _train_ctr(model, run, config, data, dist, resume_from, fingerprints, log=log, on_batch=on_batch)
    if dist is not None:
        dist.finish()
    return metrics


def _settle_config(config: TrainConfig) -> None:
    """Fill ``config`` in place with what the run records: the model's resolved hyperparameters,
    absolute paths, the transfer defaults of a pretrained user feature; refuse what cannot train."""
    from mdrec.models.registry import resolved_hyperparameters
    from mdrec.transfer.settings import TRANSFER_DEFAULTS

    config.hyperparameters = resolved_hyperparameters(config.model, config.hyperparameters)
    config.train = _resolve(config.train)
    config.valid = _resolve(config.valid)
    config.test = _resolve(config.test)
    config.warm_start = _resolve(config.warm_start)
    if config.cross_line_share and model_family(config.model) != "retrieval":
        raise MdrecError(f"--cross-line-share shapes a retrieval model's queries; '{config.model}' is a CTR model",
                         hint="drop the flag, or train --model two_tower")
    if config.hyperparameters.get("pretrained"):
        config.hyperparameters["pretrained"] = _resolve(config.hyperparameters["pretrained"])
        config.hyperparameters = {**TRANSFER_DEFAULTS, **config.hyperparameters}


def _read_splits(run: RunDir, config: TrainConfig, spec: Spec, streaming: bool, log: Printer) -> _Splits:
    """The splits validated against ``spec``, the fitted (or the resumed run's) transform, the
    behaviour sequences and the item catalogue."""
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
        if transform.grades is not None:  # the streamed batches carry the clicks only
            transform.grades, transform.grades_off = None, "a streamed log's batches carry the clicks only"
    else:
        train_log = load_log(config.train, spec)
        transform = Transform.load(run.transform_path) if run.transform_path.is_file() \
            else Transform.fit(train_log, spec)
        for warning in rare_line_warnings(train_log, spec):
            log(warning)
    if config.warm_start and not run.transform_path.is_file():
        from mdrec.transfer.warm_start import with_source_users

        transform, added = with_source_users(transform, spec, config.warm_start)
        if added:
            log(f"warm start: {added:,} users known only to {config.warm_start} join the user vocabulary "
                "(their rows start as its: a user this line has never seen is not OOV)")
    spec = with_domain_values(spec, transform.domains)
    logs = {"train": train_log}
    for name, path in (("valid", config.valid), ("test", config.test)):
        if path:
            logs[name] = load_log(path, spec, known_domains=transform.domains)
    histories: dict[str, np.ndarray | None] = {"train": None, "valid": None, "test": None}
    folds = not leave_one_out_profiles(config.model, config.hyperparameters)
    histories.update(zip(logs, split_histories(spec, list(logs.values()), folds=folds)))
    return _Splits(spec, transform, logs, histories, _catalogue(run, config, spec, transform, train_log, streaming),
                   streaming)


def _catalogue(run: RunDir, config: TrainConfig, spec: Spec, transform: Transform, train_log: Log,
               streaming: bool) -> Catalogue | None:
    """item -> line membership and content: what retrieval models and content item encoders read
    (the resumed run's own, else built from the training log); None for the others."""
    from mdrec.layers.item_encoders import needs_catalogue

    retrieval = model_family(config.model) == "retrieval"
    if not (retrieval or needs_catalogue(spec, config.hyperparameters)):
        return None
    if streaming:
        raise MdrecError("--stream is for CTR models; a retrieval model trains on the clicks in memory"
                         if retrieval else f"{'--stream' if config.stream else '--strategy ' + str(config.strategy)}"
                         " cannot build the item catalogue a content item encoder reads (the content "
                         "history, the frozen text); train in memory in one process")
    return Catalogue.load(run.catalogue_path, spec, transform.domains) if run.catalogue_path.is_file() \
        else Catalogue.from_log(train_log, spec, transform.domains)


def _training_targets(model, data: _Splits, clicks: np.ndarray, log: Printer) -> tuple[np.ndarray, str | None]:
    """What the CTR model trains on: the rows' grade levels when it trains on grades, else the
    clicks; and the line that says which (None for a 0/1 label)."""
    levels = data.transform.grade_levels
    if getattr(model, "grades", None) is not None and levels is not None:
        grades = data.logs["train"].grades
        assert grades is not None  # a transform with levels was fitted on a graded log
        line = f"training on every grade: {levels.describe()}, the other thresholds weighted {model.grades.weight:g}"
        log(line)
        return levels.levels(grades), line
    if data.spec.label.positive_if is None:
        return clicks, None
    line = "training on the click alone: " + ("--param grades=false" if levels is not None else
                                              data.transform.grades_off or "no grade levels in this run")
    log(line)
    return clicks, line


def _train_ctr(model, run: RunDir, config: TrainConfig, data: _Splits, dist, resume_from: Path | None,
               fingerprints: dict[str, str], *, log: Printer, on_batch: Callable[[int], None] | None) -> TrainMetrics:
    """Fit a CTR model (early stopping on validation AUC), calibrate it per line, and score it
    with the sanity rows on every split."""
    from mdrec.training.epochs import InMemoryEpochs, StreamingEpochs
    from mdrec.training.inference import restore_weights
    from mdrec.training.loop import fit
    from mdrec.training.validation import auc_validation, training_sample

    spec, transform, train_log = data.spec, data.transform, data.logs["train"]
    train_inputs, train_labels = model_inputs(train_log, spec, data.histories["train"]), labels_of(train_log)
    targets, grades = _training_targets(model, data, train_labels, log)
    if data.streaming:
        train = StreamingEpochs(lambda epoch: streaming_dataset(
            config.train, spec, config.batch_size, known_domains=transform.domains,
            shuffle_buffer=16 * config.batch_size, seed=config.seed + epoch), train_inputs)
    else:
        train = InMemoryEpochs(train_inputs, targets, config.batch_size, config.seed,
                               domains=train_log.domains if config.domain_batches else None)
    validate = None
    if "valid" in data.logs:
        valid_log = data.logs["valid"]
        sample = training_sample(train_inputs, train_labels, train_log.domains, config.seed)
        validate = auc_validation(model, model_inputs(valid_log, spec, data.histories["valid"]), labels_of(valid_log),
                                  valid_log.domains, train=sample)
    warm = _warm_start_hook(config, log)
    steps = None
    if dist is not None:
        from mdrec.training import distribute

        steps = distribute.StrategySteps(dist, config, spec, train, rows=transform.rows)
    result = fit(model, run, config, train, validate, log=log, on_batch=on_batch, after_build=warm, steps=steps,
                 resume_from=resume_from)
    restore_weights(model, run.best)
    if dist is None or dist.chief:
        write_projector(run.path, encoder_tables(model_encoders(model), spec,
                                                 iter_logs(config.train, spec) if data.streaming else [train_log]))
    metrics: TrainMetrics = {"model": config.model, "best_epoch": result.best_epoch,
                             "best_valid_auc": result.best_score, "epochs_run": result.epochs_run,
                             "stopped_early": result.stopped_early, "train_rows": transform.rows,
                             "missing_values": {}, "oov": {}, "tables": {}, **_transfer_metrics(model, warm)}
    if grades:
        metrics["grades"] = grades
    if dist is not None:
        metrics["strategy"] = {**dist.describe(), "sharded_tables": distribute.sharding_report(model)}
    if transform.hashed:  # hashed ids: buckets, distinct training ids, collisions
        metrics["hashing"] = transform.hashed
    _score_ctr_splits(metrics, model, run, config, data, fingerprints, log)
    atomic_write_json(run.metrics_path, metrics)
    return metrics


# The CTR sanity rows fitted in this process, by the bytes they were fitted on: the runs of one
# process on one split (the demo's STAR and shared-bottom, a bench's models and seeds) fit them
# once (a graded Douban run spends a minute on them). Two splits' rows at most stay in memory.
_FITTED_ROWS: OrderedDict[tuple, tuple[list[CtrBaseline], dict[str, int]]] = OrderedDict()
_FITTED_KEPT = 2


def _sanity_rows(fingerprints: dict[str, str], graded: bool, fit: Callable[[], list[CtrBaseline]],
                 train_missing: dict[str, int]) -> list[CtrBaseline]:
    """``fit()``'s rows, or the rows fitted earlier in this process on the same training and
    validation bytes, spec and grading; ``train_missing`` (filled by ``fit``) comes back with them."""
    key = (fingerprints.get("train"), fingerprints.get("valid"), fingerprints.get("spec"), graded,
           ctr_baselines.MAX_LOGISTIC_ROWS)
    if key not in _FITTED_ROWS:
        _FITTED_ROWS[key] = (fit(), dict(train_missing))
        while len(_FITTED_ROWS) > _FITTED_KEPT:
            _FITTED_ROWS.popitem(last=False)
    _FITTED_ROWS.move_to_end(key)
    fitted, missing = _FITTED_ROWS[key]
    train_missing.update(missing)
    return fitted


def _score_ctr_splits(metrics: TrainMetrics, model, run: RunDir, config: TrainConfig, data: _Splits,
                      fingerprints: dict[str, str], log: Printer) -> None:
    """Add to ``metrics`` the calibration step and, per split, the model's table beside the sanity
    rows (user+item mean, first-order logistic, and for a graded label the logistic model on every
    grade): fitted on the same training split, their settings chosen on the validation split."""
    from mdrec.training.inference import predict

    spec, transform = data.spec, data.transform
    levels = transform.grade_levels
    train_missing: dict[str, int] = {}

    def id_chunks():
        for part in (iter_logs(config.train, spec) if data.streaming else [data.logs["train"]]):
            for key, value in part.missing.items():
                train_missing[key] = train_missing.get(key, 0) + value
            yield ctr_ids(part, spec, grades=levels is not None)

    splits = {name: (data.logs[name], model_inputs(data.logs[name], spec, data.histories[name]))
              for name in ("valid", "test") if name in data.logs}
    scored = {name: predict(model, inputs) for name, (_, inputs) in splits.items()}
    if getattr(model, "calibration", None) is not None:
        metrics["calibration"] = _calibrate(model, run, spec, transform, splits, scored, log)
    valid_log = data.logs.get("valid")
    fitted = _sanity_rows(fingerprints, levels is not None, lambda: fit_ctr_baselines(
        id_chunks(), ctr_ids(valid_log, spec) if valid_log is not None else None, levels=levels), train_missing)
    mean, extra = fitted[0], fitted[1:]
    metrics["missing_values"]["train"] = train_missing
    metrics["baseline"] = {"name": mean.name.removeprefix("baseline: "), "alpha": mean.settings["alpha"],
                           "validation_auc": mean.report()["validation_auc"], "tables": {}}
    metrics["baselines"] = {b.name: {**b.report(), "tables": {}} for b in extra}
    for name, (split, _) in splits.items():
        metrics["tables"][name] = table_records(ctr_table(spec, split, scored[name]))
        ids = ctr_ids(split, spec)
        metrics["baseline"]["tables"][name] = table_records(ctr_table(spec, split, mean.predict(*ids[:3])))
        for b in extra:
            if not b.skipped:
                metrics["baselines"][b.name]["tables"][name] = table_records(ctr_table(spec, split,
                                                                                       b.predict(*ids[:3])))
        metrics["oov"][name] = transform.oov_counts(split, spec, data.histories[name])
        metrics["missing_values"][name] = split.missing


def _calibrate(model, run: RunDir, spec: Spec, transform: Transform, splits: dict[str, tuple[Log, dict]],
               scored: dict[str, np.ndarray], log: Printer) -> dict:
    """Fit the model's per-line calibration on the validation rows, keep it in the best weights,
    and rescore every split (``scored``: split -> probabilities, replaced in place). Returns the
    report: each line's pair and each split's table before the step."""
    from mdrec.training.calibration import fit_line_calibration
    from mdrec.training.inference import predict, save_weights

    by_user = model.calibration.user_groups > 1
    method = "platt per line, shifted per user group (users with / without a training row)" if by_user \
        else "platt per line"
    if "valid" not in splits:
        log("calibration: skipped (no --valid split to fit it on)")
        return {"method": method, "skipped": "no validation split"}
    valid_log, valid_inputs = splits["valid"]
    index = {name: i for i, name in enumerate(transform.domains)}
    lines = np.array([index[d] for d in valid_log.domains], dtype=np.int64)
    groups = None
    if by_user:  # (the user id's row in the model's own table decides; the line's column keys a per-line id)
        import tensorflow as tf

        keys = [k for k in (spec.user_id.name, spec.domain.column) if k]
        groups = model.user_groups({k: tf.constant(valid_inputs[k]) for k in keys}).numpy()
    fits = fit_line_calibration(model.calibration, scored["valid"], labels_of(valid_log), lines, transform.domains,
                                groups)
    save_weights(model, run.best)
    report = {"method": method, "fitted_on": "valid",
              "lines": {line: fit.report() for line, fit in fits.items()}, "before": {}}
    for name, (split, inputs) in splits.items():
        before = ctr_table(spec, split, scored[name])
        scored[name] = predict(model, inputs)
        after = ctr_table(spec, split, scored[name])
        report["before"][name] = table_records(before)
        log(f"calibration on {name} (mean predicted / observed click rate), before -> after the per-line "
            f"{'(and user group) ' if by_user else ''}Platt step fitted on valid: " + ", ".join(f"{line} {before.loc[line, 'calibration']:.3f} -> "
                                                      f"{after.loc[line, 'calibration']:.3f}" for line in after.index))
    for line, fit in fits.items():
        if fit.note():
            log(f"calibration of {line}: {fit.note()}")
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


def _train_retrieval(model, run: RunDir, config: TrainConfig, data: _Splits, *, log: Printer,
                     on_batch: Callable[[int], None] | None,
                     baselines_from: Mapping[str, Mapping[str, Any]] | None = None,
                     sanity_rows: bool = True) -> TrainMetrics:
    """Fit a retrieval model (early stopping on validation recall) and rank every split's clicks
    with it beside popularity, ItemKNN and EASE (popularity only without ``sanity_rows``)."""
    from mdrec.training import retrieval
    from mdrec.training.epochs import InMemoryEpochs
    from mdrec.training.inference import restore_weights
    from mdrec.training.loop import fit

    spec, transform, catalogue, logs, histories = data.spec, data.transform, data.catalogue, data.logs, data.histories
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
    metrics: TrainMetrics = {"model": config.model, "family": "retrieval", "best_epoch": result.best_epoch,
                     f"best_{metric}": result.best_score, "epochs_run": result.epochs_run,
                     "stopped_early": result.stopped_early, "train_rows": transform.rows,
                     "train_clicks": int(len(labels)), "catalogue_items": len(catalogue),
                     "catalogue_per_line": dict(zip(catalogue.domains, catalogue.membership.sum(1).tolist())),
                     "tables": {}, "baseline": {"name": retrieval.POPULARITY, "tables": {}}, "counts": {},
                     "oov": {}, "missing_values": {}, **_transfer_metrics(model, warm)}
    reused = baselines_from or {}
    splits = {name for name in ("valid", "test") if name in logs}
    if not sanity_rows:
        fitted, metrics["baselines"] = [], {}
    elif reused and all(r.get("skipped") or splits <= set(r.get("tables", {})) for r in reused.values()):
        # The same split files: a sanity row's tables do not depend on the model, so they are copied.
        fitted = []
        metrics["baselines"] = copy.deepcopy({name: dict(r) for name, r in reused.items()})
    else:
        fitted = fit_baselines(spec, catalogue, logs["train"], logs.get("valid"), log=log,
                               chosen={name: dict(r["settings"]) for name, r in reused.items()} or None,
                               grids={name: list(r.get("validation_grid", [])) for name, r in reused.items()})
        metrics["baselines"] = {b.name: {**b.report(), "tables": {}} for b in fitted}
    seen = [logs["train"]]
    for name in ("valid", "test"):
        if name not in logs:
            continue
        tables = retrieval.retrieval_tables(model, spec, catalogue, logs[name], histories[name], seen,
                                            baselines=fitted)
        metrics["tables"][name] = table_records(tables["full"]["model"])
        metrics["baseline"]["tables"][name] = table_records(tables["full"][retrieval.POPULARITY])
        for b in fitted:
            if b.name in tables["full"]:
                metrics["baselines"][b.name]["tables"][name] = table_records(tables["full"][b.name])
        metrics["counts"][name] = tables["counts"]
        metrics["oov"][name] = transform.oov_counts(logs[name], spec, histories[name])
        metrics["missing_values"][name] = logs[name].missing
        seen = seen + [logs[name]]  # the test split's ranking also removes validation clicks
    atomic_write_json(run.metrics_path, metrics)
    return metrics


