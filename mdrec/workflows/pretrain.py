"""``mdrec pretrain``: a user encoder pretrained on one business line's behaviour sequences.

runs/NAME/
  config.json        model "user_encoder"; objective, architecture and every hyperparameter; data
                     paths and fingerprints (a run folder like any other: same resume rules, and a
                     resume refuses changed data)
  spec.yaml          the spec as used
  vocabulary.json    the item vocabulary (most frequent first) and the item -> attribute tables
  sequences.parquet  every user's clicks in --data (oldest first, all of them; with times when the
                     spec has a time column): what transfer looks a target user up in, and (with
                     --valid's clicks after them) the histories `mdrec evaluate --run` ranks against
  checkpoints/       the latest training state (resume point); best/ the best epoch's weights
  encoder/           the best encoder's weights alone (what
                     :func:`mdrec.workflows.pretrained.load_pretrained` restores)
  history.json       per epoch: train loss, seconds and the validation NDCG@10
  metrics.json       the ranking tables of :mod:`mdrec.pretraining.evaluation` on the validation
                     queries and, with ``test``, the test queries; training time and events per second

Early stopping on validation NDCG@10 of the encoder's next-item head (the user-vector kNN probe's
for contrastive pretraining without a next-item loss). The model trains with
:func:`mdrec.training.loop.fit`, so a run killed at any point resumes from its last checkpoint when
the same command runs again.

The hyperparameters are resolved and checked in :mod:`mdrec.workflows.pretrain_hyperparameters`; a
finished run is loaded back, and scored on a new log, in :mod:`mdrec.workflows.pretrained`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypedDict

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json, atomic_write_table
from mdrec.models.user_encoder import SPECIAL_ROWS, UserEncoder
from mdrec.pretraining import evaluation
from mdrec.pretraining.batches import SequenceBatches
from mdrec.pretraining.data import (HeldOut, Queries, SourceData, attribute_tables, held_out_queries,
                                    item_vocabulary, load_source, resolve_source)
from mdrec.pretraining.model import PretrainModel
from mdrec.pretraining.settings import DEFAULTS, INTRODUCED_LATER, TRAINING, training_defaults
from mdrec.spec import Spec, load_spec
from mdrec.training.board import Validation
from mdrec.training.projector import MAX_ROWS, EmbeddingRows, IdCounts, write_projector
from mdrec.training.run import RunDir, TrainConfig
from mdrec.workflows.pretrain_hyperparameters import (MODEL, check_schedule, encoder_kwargs, resolve_exclude_seen,
                                                      resolve_hyperparameters, resolve_negatives)
from mdrec.workflows.pretrained import ranking_protocol

if TYPE_CHECKING:
    from mdrec.training.loop import FitResult

Printer = Callable[[str], None]

# What pretrain_run returns and writes to metrics.json.
PretrainMetrics = TypedDict("PretrainMetrics", {
    "model": str,
    "objective": str, "architecture": str, "pooling": str, "causal": bool,
    "negatives": int, "exclude_seen": bool, "softmax": str,   # "full" or "sampled (N)"
    "best_epoch": int,
    "best_valid_ndcg@10": float,            # the early-stopping score (evaluation.EARLY_STOPPING)
    "epochs_run": int, "stopped_early": bool,
    "early_stopping": str,                  # what was watched: the item head's or the user-vector kNN's
    "user_vector": str,                     # which representation transfer and the user_encoder export use
    "data": dict[str, Any],                 # users, items, events of the training sequences
    "protocols": dict[str, Any],            # per split: the queries ranked and how
    "tables": dict[str, list[dict]],        # per split: ranking rows (model, popularity, kNN) as records
    "training_seconds": float, "training_events_per_s": float | None, "seconds": float,
})

USER_VECTOR = {
    "last": "the last position's state: what the next-item head scores (state . item embedding + item bias)",
    "mask": "the state of a [MASK] appended after the history: what the next-item head scores",
    "cls": "the [CLS] token's state (no next-item head reads it)",
    "mean": "the mean of the states over the history (no next-item head reads it)",
}


@dataclass
class _Sequences:
    """What a pretraining run trains and scores on, read once."""

    source: SourceData       # --data's clicks: every user's sequence (oldest first), the lines read
    held: HeldOut            # training sequences, validation queries, test queries (None without --test)
    train: str               # the absolute paths config.json records
    valid: str | None
    test: str | None


@dataclass
class _Model:
    """The encoder and its pretraining model, with the item rows they rank."""

    encoder: UserEncoder
    model: PretrainModel
    vocabulary: list[str]    # most clicked first: item row SPECIAL_ROWS + i is vocabulary[i]
    attributes: dict         # attribute name -> {"vocabulary", "items"}: each item's value
    negatives: int           # resolved: 0 is the full softmax
    exclude_seen: bool

    def evaluator(self, known: dict[str, list[str]], queries: Queries, times: dict[str, list[int]] | None,
                  neighbours: int) -> evaluation.Evaluator:
        """``queries`` ranked after the ``known`` sequences: the encoder beside popularity and kNN."""
        popularity = -np.arange(len(self.vocabulary), dtype=np.float64)  # the vocabulary is most-clicked first
        return evaluation.Evaluator(self.encoder, self.vocabulary, known, queries, times=times,
                                    popularity=popularity, neighbours=neighbours)


@dataclass
class _Fitted:
    """What training leaves behind for the metrics record."""

    result: FitResult
    valid: evaluation.Evaluator   # the validation queries' rankings (also the early-stopping score)
    seconds: float                # training time summed over the epochs run (this process and any resumed)
    events: int                   # items read over those epochs (an upper bound with repeats > 1)


def pretrain_run(spec_path: str | Path, data: str | Path, out: str | Path, *, valid: str | Path | None = None,
                 test: str | Path | None = None, epochs: int | None = None,
                 batch_size: int = TRAINING["batch_size"], learning_rate: float = TRAINING["learning_rate"],
                 patience: int | None = None, seed: int = TRAINING["seed"],
                 checkpoint_every: int = TRAINING["checkpoint_every"], overwrite: bool = False, log: Printer = print,
                 on_batch: Callable[[int], None] | None = None, **hyperparameters) -> PretrainMetrics:
    """Pretrain a user encoder on ``data``'s click sequences into run folder ``out`` (resumes).

    ``epochs`` and ``patience`` left None are the objective's (``training_defaults``). Returns the
    run's metrics (also written to ``out/metrics.json``): the ranking tables of the validation and
    (with ``test``) test queries, the resolved settings and the training time.
    """
    started = time.time()
    spec = load_spec(spec_path)
    hp = resolve_hyperparameters(hyperparameters, spec)
    schedule = training_defaults(hp["objective"])
    epochs = schedule["epochs"] if epochs is None else epochs
    patience = schedule["patience"] if patience is None else patience
    check_schedule(epochs, batch_size, learning_rate, patience)
    sequences = _read_sequences(spec, data, valid, test, hp, seed, log)
    config = TrainConfig(model=MODEL, train=sequences.train, valid=sequences.valid, test=sequences.test,
                         epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                         patience=int(patience), seed=int(seed), checkpoint_every=int(checkpoint_every),
                         hyperparameters=hp)
    run = RunDir(out)
    fingerprints = run.prepare(config, {"train": config.train, "valid": config.valid, "test": config.test,
                                        "spec": spec_path}, overwrite=overwrite,
                                        hyperparameter_defaults={**DEFAULTS, **INTRODUCED_LATER})
    built = _build_model(run, hp, sequences, seed)
    held = sequences.held
    data_summary = _data_summary(sequences.source, held.train, built.vocabulary, built.attributes, hp["max_length"])
    log(f"{data_summary['users']:,} users, {data_summary['clicks']:,} clicks, {len(built.vocabulary):,} items "
        f"(median sequence {data_summary['sequence_length']['median']:.0f}); validation: {len(held.valid):,} "
        f"held-out items ({held.valid.protocol})" + (f"; test: {len(held.test):,}" if held.test is not None else ""))
    if not run.exists():
        run.write_config(config, spec, fingerprints)
        atomic_write_json(run.path / "vocabulary.json", {"items": built.vocabulary, "attributes": built.attributes})
        write_sequences(run.path / "sequences.parquet", sequences.source.sequences, sequences.source.times)
    fitted = _fit(built, run, config, sequences, hp, log=log, on_batch=on_batch)
    tables, protocols = _score_splits(built, held, hp, fitted.valid)
    metrics = _metrics_record(hp, built, fitted, data_summary, tables, protocols, started)
    atomic_write_json(run.metrics_path, metrics)
    return metrics


def _read_sequences(spec: Spec, data: str | Path, valid: str | Path | None, test: str | Path | None,
                    hp: dict[str, Any], seed: int, log: Printer) -> _Sequences:
    """The click sequences of ``data`` (and of ``valid``/``test``) and the held-out queries they give.

    Lowers ``hp["max_length"]`` (in place) to the longest training sequence when that is shorter.
    """
    source_path = resolve_source(data)
    valid_path = str(Path(valid).resolve()) if valid else None
    test_path = str(Path(test).resolve()) if test else None
    log(f"reading {source_path}" + (f" (lines {', '.join(hp['domains'])})" if hp["domains"] else ""))
    source = load_source(source_path, spec, hp["domains"], hp["attributes"])
    valid_source = load_source(valid_path, spec, hp["domains"], prepared=False) if valid_path else None
    test_source = load_source(test_path, spec, hp["domains"], prepared=False) if test_path else None
    held = held_out_queries(source, valid_source, test_source, hp["max_valid_users"], seed)
    # Positions past the longest training sequence would never be trained: the encoder stops there.
    longest = max((len(items) for items in held.train.values()), default=0)
    if longest < hp["max_length"]:
        log(f"max_length {hp['max_length']} -> {max(longest, 2)}: the longest training sequence")
        hp["max_length"] = max(longest, 2)
    return _Sequences(source, held, str(Path(source_path).resolve()), valid_path, test_path)


def _build_model(run: RunDir, hp: dict[str, Any], sequences: _Sequences, seed: int) -> _Model:
    """The encoder over the run's item vocabulary (a resumed run's own, else the training
    sequences'), inside the pretraining model of ``hp["objective"]``."""
    vocabulary_path = run.path / "vocabulary.json"
    if vocabulary_path.is_file():  # resuming: the checkpoint's item rows are this vocabulary's
        stored = json.loads(vocabulary_path.read_text())
        vocabulary, attributes = stored["items"], stored["attributes"]
    else:
        vocabulary = item_vocabulary(sequences.held.train)
        attributes = attribute_tables(sequences.source.attributes, vocabulary)
    negatives = resolve_negatives(hp["negatives"], len(vocabulary))
    exclude_seen = resolve_exclude_seen(hp["exclude_seen"], hp["objective"], negatives, len(vocabulary))
    try:
        encoder = UserEncoder(vocabulary, attributes=attributes, name="user_encoder", **encoder_kwargs(hp))
        model = PretrainModel(encoder, hp["objective"], negatives=negatives, mask_rate=hp["mask_rate"],
                              temperature=hp["temperature"], attribute_weight=hp["attribute_weight"],
                              next_item_weight=hp["next_item_weight"], mask_last=hp["mask_last"],
                              exclude_seen=exclude_seen,
                              crop=hp["crop"], mask=hp["mask"],
                              reorder=hp["reorder"], seed=seed)
    except ValueError as exc:
        raise MdrecError(f"user encoder: {exc}") from None
    return _Model(encoder, model, vocabulary, attributes, negatives, exclude_seen)


def _fit(built: _Model, run: RunDir, config: TrainConfig, sequences: _Sequences, hp: dict[str, Any], *,
         log: Printer, on_batch: Callable[[int], None] | None) -> _Fitted:
    """Train with early stopping on the validation queries, keep the best epoch's weights, and write
    the encoder alone (encoder/) and the projector's item table."""
    from mdrec.training.inference import restore_weights
    from mdrec.training.loop import fit

    held, model = sequences.held, built.model
    index = {item: SPECIAL_ROWS + i for i, item in enumerate(built.vocabulary)}
    users = [u for u in held.train if held.train[u]]
    batches = SequenceBatches([np.asarray([index[i] for i in held.train[u]], np.int32) for u in users],
                              model.window, config.batch_size, config.seed,
                              times=[held.train_times[u] for u in users] if held.train_times and hp["time_buckets"]
                              else None, repeats=int(hp["repeats"]))
    if hp["loss_weighting"] == "token":  # read when the step is traced, in fit()
        model.targets_per_batch = batches.mean_targets_per_batch(next_item=model.objective != "mlm",
                                                                 share=hp["mask_rate"])
    evaluate_valid = built.evaluator(held.train, held.valid, held.train_times, hp["knn_neighbours"])
    early = (evaluate_valid.head if model.predicts_items else evaluate_valid.knn)
    # Every ranking metric becomes a validation curve; the early-stopping one decides.
    validate = (lambda: Validation(score=(m := early())[evaluation.EARLY_STOPPING], scalars=m)) \
        if len(evaluate_valid) else None
    decay = config.epochs * batches.batches_per_epoch if hp["schedule"] == "cosine" else None
    warmup = round(float(hp["warmup_epochs"]) * batches.batches_per_epoch)
    result = fit(model, run, config, batches, validate, metric=f"valid_{evaluation.EARLY_STOPPING}", log=log,
                 on_batch=on_batch, decay_steps=decay, warmup_steps=warmup)
    restore_weights(model, run.best)
    save_encoder(built.encoder, run.path / "encoder")
    write_projector(run.path, [item_rows(built.encoder, built.vocabulary, held.train, sequences.source.domains)])
    history = run.read_history()
    seconds = float(sum(entry.get("seconds", 0.0) for entry in history))
    # Items read per epoch (window copies beyond the first are shorter on average: an upper bound there).
    events = int(np.minimum(batches.lengths, model.window).sum()) * int(hp["repeats"]) * len(history)
    return _Fitted(result, evaluate_valid, seconds, events)


def _score_splits(built: _Model, held: HeldOut, hp: dict[str, Any],
                  evaluate_valid: evaluation.Evaluator) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """(tables, protocols) by split: the trained encoder's ranking rows and how each split was ranked.
    The test queries rank after the validation clicks too (``held.before_test``)."""
    predicts_items = built.model.predicts_items
    tables = {"valid": evaluate_valid.table(hp["objective"], predicts_items)}
    protocols = {"valid": ranking_protocol(held.valid, evaluate_valid, built.vocabulary)}
    if held.test is not None:
        evaluate_test = built.evaluator(held.before_test, held.test, held.before_test_times, hp["knn_neighbours"])
        tables["test"] = evaluate_test.table(hp["objective"], predicts_items)
        protocols["test"] = ranking_protocol(held.test, evaluate_test, built.vocabulary)
    return tables, protocols


def _metrics_record(hp: dict[str, Any], built: _Model, fitted: _Fitted, data_summary: dict,
                    tables: dict[str, list[dict]], protocols: dict[str, dict], started: float) -> PretrainMetrics:
    """metrics.json of a finished run (see :data:`PretrainMetrics`); ``started``: time.time() at the call."""
    negatives, result, seconds = built.negatives, fitted.result, fitted.seconds
    metrics: PretrainMetrics = {"model": MODEL, "objective": hp["objective"], "architecture": hp["architecture"],
               "pooling": hp["pooling"], "causal": hp["causal"], "negatives": negatives,
               "exclude_seen": built.exclude_seen,
               "softmax": "full" if negatives == 0 or negatives >= len(built.vocabulary) else f"sampled ({negatives})",
               "best_epoch": result.best_epoch, f"best_valid_{evaluation.EARLY_STOPPING}": result.best_score,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
               "early_stopping": ("item head" if built.model.predicts_items else evaluation.KNN)
               + f" {evaluation.EARLY_STOPPING} on the validation queries",
               "user_vector": USER_VECTOR[hp["pooling"]], "data": data_summary, "protocols": protocols,
               "tables": tables, "training_seconds": round(seconds, 1),
               "training_events_per_s": round(fitted.events / seconds, 1) if seconds else None,
               "seconds": round(time.time() - started, 1)}
    return metrics


def _data_summary(source: SourceData, train: dict[str, list[str]], vocabulary: list[str],
                  attributes: dict, max_length: int) -> dict:
    """metrics.json's "data": the source's size, the training sequences' lengths, the attributes' coverage."""
    lengths = np.asarray([len(s) for s in train.values()] or [0])
    return {"source": source.path, "domains": source.domains, "rows": source.rows, "clicks": source.clicks,
            "users": len(source.sequences), "items": len(vocabulary), "training_clicks": int(lengths.sum()),
            "sequence_length": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                                "max": int(lengths.max()), "truncated_to_max_length": int((lengths > max_length).sum())},
            "attributes": {name: {"values": len(t["vocabulary"]),
                                  "items_without_value": sum(1 for v in t["items"] if not v)}
                           for name, t in attributes.items()}}


def write_sequences(path: Path, sequences: dict[str, list[str]], times: dict[str, list[int]] | None) -> None:
    """sequences.parquet: one row per user (sorted), its items (and times) oldest first."""
    users = sorted(sequences)
    frame = pd.DataFrame({"user": users, "items": [list(sequences[u]) for u in users]})
    if times is not None:
        frame["times"] = [[int(t) for t in times[u]] for u in users]
    atomic_write_table(frame, path, "parquet")


def save_encoder(encoder: UserEncoder, folder: Path) -> None:
    """The encoder's weights alone, without the pretraining model's heads or optimizer state."""
    with atomic_directory(folder) as tmp:
        tf.train.Checkpoint(encoder=encoder).write(str(tmp / "weights"))


def item_rows(encoder: UserEncoder, vocabulary: list[str], sequences: dict[str, list[str]],
              lines: list[str]) -> EmbeddingRows:
    """The encoder's item table for the projector: one row per vocabulary item (most clicked first, at
    most projector.MAX_ROWS), its training clicks counted over ``sequences``; the line column names
    the pretraining lines (a sequence does not keep each click's line)."""
    counts = IdCounts()
    clicked = np.asarray([item for items in sequences.values() for item in items], dtype=object)
    counts.add(clicked, np.full(len(clicked), "+".join(lines) or "all", dtype=object), np.ones(len(clicked)))
    kept = vocabulary[:MAX_ROWS]
    return EmbeddingRows("item_id", encoder.item_output_table().numpy()[:len(kept)], counts.metadata(kept))
