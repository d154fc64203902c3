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
  encoder/           the best encoder's weights alone (what :func:`load_pretrained` restores)
  history.json       per epoch: train loss, seconds and the validation NDCG@10
  metrics.json       the ranking tables of :mod:`mdrec.pretraining.evaluation` on the validation
                     queries and, with ``test``, the test queries; training time and events per second

Early stopping on validation NDCG@10 of the encoder's next-item head (the user-vector kNN probe's
for contrastive pretraining without a next-item loss). The model trains with
:func:`mdrec.training.loop.fit`, so a run killed at any point resumes from its last checkpoint when
the same command runs again.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypedDict

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json, atomic_write_table
from mdrec.models.user_encoder import ITEMS, SPECIAL_ROWS, TIMES, UserEncoder, default_block
from mdrec.pretraining import evaluation
from mdrec.pretraining.batches import SequenceBatches
from mdrec.pretraining.data import (SourceData, attribute_tables, held_out_queries, item_vocabulary, load_source,
                                    queries_against, resolve_source, sequence_matrix)
from mdrec.pretraining.model import PretrainModel
from mdrec.pretraining.objectives import full_softmax
from mdrec.pretraining.settings import (BLOCKS, DEFAULTS, FULL_SOFTMAX_ITEMS, OBJECTIVES, POOLINGS,
                                        SAMPLED_NEGATIVES, SCHEDULES, TRAINING)
from mdrec.spec import Spec, load_spec
from mdrec.training.board import Validation
from mdrec.training.projector import MAX_ROWS, EmbeddingRows, IdCounts, write_projector
from mdrec.training.run import RunDir, TrainConfig

MODEL = "user_encoder"
Printer = Callable[[str], None]
ENCODER_KEYS = ("architecture", "block", "dim", "layers", "heads", "max_length", "pooling", "dropout", "time_buckets")


def resolve_hyperparameters(hyperparameters: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """Defaults filled in and checked; every mistake is one MdrecError saying what to pass."""
    unknown = sorted(set(hyperparameters) - set(DEFAULTS))
    if unknown:
        raise MdrecError(f"pretraining does not take {', '.join(unknown)}; it takes {', '.join(sorted(DEFAULTS))}")
    hp = {**DEFAULTS, **{k: v for k, v in hyperparameters.items() if v is not None}}
    hp["attributes"] = list(hp["attributes"] or [])
    hp["domains"] = [d for part in (hp["domains"] or []) for d in str(part).split(",") if d]
    objective = hp["objective"]
    if objective not in OBJECTIVES:
        raise MdrecError(f"unknown --objective '{objective}'", hint=f"use one of {', '.join(OBJECTIVES)}")
    if hp["architecture"] is None:
        hp["architecture"] = "transformer"
    if hp["architecture"] not in ("transformer", "nextitnet"):
        raise MdrecError(f"unknown --architecture '{hp['architecture']}'", hint="use transformer or nextitnet")
    if objective == "mlm" and hp["architecture"] == "nextitnet":
        raise MdrecError("--objective mlm predicts a masked item from both sides, and nextitnet is causal",
                         hint="use --architecture transformer (or --objective autoregressive for nextitnet)")
    if float(hp["next_item_weight"]) < 0:
        raise MdrecError(f"--next-item-weight must be >= 0, got {hp['next_item_weight']}")
    # Next-item objectives read the past only; pure contrastive (CLUE) may read both sides.
    causal = (hp["architecture"] == "nextitnet" or objective == "autoregressive"
              or (objective == "contrastive" and float(hp["next_item_weight"]) > 0))
    if hp["pooling"] is None:
        hp["pooling"] = "last" if causal else ("cls" if objective == "contrastive" else "mask")
    if hp["architecture"] == "transformer":
        hp["block"] = hp["block"] or default_block(causal)
        if hp["block"] not in BLOCKS:
            raise MdrecError(f"unknown --block '{hp['block']}'", hint=f"use {' or '.join(BLOCKS)}")
    elif hp["block"] is not None:
        raise MdrecError("--block is for --architecture transformer", hint="drop --block")
    if hp["pooling"] not in POOLINGS:
        raise MdrecError(f"unknown --pooling '{hp['pooling']}'", hint=f"use {', '.join(POOLINGS)}")
    if causal and hp["pooling"] in ("cls", "mask"):
        raise MdrecError(f"--pooling {hp['pooling']} needs a bidirectional encoder, and {objective} with "
                         f"{hp['architecture']} is causal", hint="use --pooling last (or mean)")
    if not causal and hp["pooling"] == "last":
        raise MdrecError("--pooling last is for causal encoders (autoregressive, nextitnet, contrastive with a "
                         "next-item loss)", hint="use --pooling mask, cls or mean")
    for key in ("dim", "layers", "heads", "max_length", "repeats"):
        if int(hp[key]) < 1:
            raise MdrecError(f"--{key.replace('_', '-')} must be at least 1, got {hp[key]}")
    if hp["architecture"] == "transformer" and hp["dim"] % hp["heads"]:
        raise MdrecError(f"--dim {hp['dim']} is not divisible by --heads {hp['heads']}",
                         hint="pick a dim that is a multiple of heads, e.g. --dim 64 --heads 2")
    if hp["pooling"] == "mask" and hp["max_length"] < 2:
        raise MdrecError("--max-length must be at least 2 for --pooling mask (the history and a [MASK])")
    if not 0.0 < float(hp["mask_rate"]) < 1.0:
        raise MdrecError(f"--mask-rate must be between 0 and 1, got {hp['mask_rate']}")
    if not 0.0 <= float(hp["mask_last"]) <= 1.0:
        raise MdrecError(f"--mask-last must be between 0 and 1, got {hp['mask_last']}")
    if not 0.0 <= float(hp["dropout"]) < 1.0:
        raise MdrecError(f"--dropout must be in [0, 1), got {hp['dropout']}")
    if float(hp["temperature"]) <= 0:
        raise MdrecError(f"--temperature must be positive, got {hp['temperature']}")
    if hp["negatives"] is not None and int(hp["negatives"]) < 0:
        raise MdrecError(f"--negatives must be >= 0 (0: full softmax), got {hp['negatives']}")
    if hp["schedule"] not in SCHEDULES:
        raise MdrecError(f"unknown --schedule '{hp['schedule']}'", hint=f"use {' or '.join(SCHEDULES)}")
    if int(hp["time_buckets"]) < 0:
        raise MdrecError(f"--time-buckets must be >= 0, got {hp['time_buckets']}")
    if int(hp["time_buckets"]) and not spec.time:
        raise MdrecError(f"--time-buckets needs event times and spec '{spec.name}' has no time column",
                         path=spec.source, hint="drop --time-buckets, or add `time: {column: ...}` to the spec")
    hp["causal"] = causal
    return hp


def resolve_negatives(negatives: int | None, items: int) -> int:
    """--negatives auto (None): the full softmax (0) up to FULL_SOFTMAX_ITEMS items, else sampled."""
    if negatives is not None:
        return int(negatives)
    return 0 if items <= FULL_SOFTMAX_ITEMS else SAMPLED_NEGATIVES


def resolve_exclude_seen(exclude_seen: bool | None, objective: str, negatives: int, items: int) -> bool:
    """--exclude-seen auto (None): on for next-item training over the full softmax, where it was
    measured (SASRec on MovieLens-1M, 3 seeds: test NDCG@10 0.1756 ± 0.0006 against 0.17xx); off
    otherwise. Asked for with sampled negatives, it is an error (it would be ignored)."""
    if exclude_seen is None:
        return objective == "autoregressive" and full_softmax(negatives, items)
    if exclude_seen and not full_softmax(negatives, items):
        raise MdrecError(f"--exclude-seen reshapes the full softmax, and {items:,} items get {negatives:,} "
                         "sampled negatives", hint="pass --negatives 0 for the full softmax, or drop --exclude-seen")
    return bool(exclude_seen)


def encoder_kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    return {**{key: hp[key] for key in ENCODER_KEYS}, "causal": hp["causal"]}


def _check_schedule(epochs: int, batch_size: int, learning_rate: float, patience: int) -> None:
    for name, value in (("epochs", epochs), ("batch-size", batch_size)):
        if int(value) < 1:
            raise MdrecError(f"--{name} must be at least 1, got {value}")
    if not float(learning_rate) > 0:
        raise MdrecError(f"--learning-rate must be positive, got {learning_rate}")
    if int(patience) < 1:
        raise MdrecError(f"--patience must be at least 1, got {patience}")


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


def pretrain_run(spec_path: str | Path, data: str | Path, out: str | Path, *, valid: str | Path | None = None,
                 test: str | Path | None = None, epochs: int = TRAINING["epochs"],
                 batch_size: int = TRAINING["batch_size"], learning_rate: float = TRAINING["learning_rate"],
                 patience: int = TRAINING["patience"], seed: int = TRAINING["seed"],
                 checkpoint_every: int = TRAINING["checkpoint_every"], overwrite: bool = False, log: Printer = print,
                 on_batch: Callable[[int], None] | None = None, **hyperparameters) -> PretrainMetrics:
    """Pretrain a user encoder on ``data``'s click sequences into run folder ``out`` (resumes)."""
    from mdrec.training.loop import fit, restore_weights

    started = time.time()
    spec = load_spec(spec_path)
    hp = resolve_hyperparameters(hyperparameters, spec)
    _check_schedule(epochs, batch_size, learning_rate, patience)
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
    config = TrainConfig(model=MODEL, train=str(Path(source_path).resolve()), valid=valid_path, test=test_path,
                         epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                         patience=int(patience), seed=int(seed), checkpoint_every=int(checkpoint_every),
                         hyperparameters=hp)
    run = RunDir(out)
    fingerprints = run.prepare(config, {"train": config.train, "valid": config.valid, "test": config.test,
                                        "spec": spec_path}, overwrite=overwrite)
    vocabulary_path = run.path / "vocabulary.json"
    if vocabulary_path.is_file():
        stored = json.loads(vocabulary_path.read_text())
        vocabulary, attributes = stored["items"], stored["attributes"]
    else:
        vocabulary = item_vocabulary(held.train)
        attributes = attribute_tables(source.attributes, vocabulary)
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
    data_summary = _data_summary(source, held.train, vocabulary, attributes, hp["max_length"])
    log(f"{data_summary['users']:,} users, {data_summary['clicks']:,} clicks, {len(vocabulary):,} items "
        f"(median sequence {data_summary['sequence_length']['median']:.0f}); validation: {len(held.valid):,} "
        f"held-out items ({held.valid.protocol})" + (f"; test: {len(held.test):,}" if held.test is not None else ""))
    if not run.exists():
        run.write_config(config, spec, fingerprints)
        atomic_write_json(vocabulary_path, {"items": vocabulary, "attributes": attributes})
        write_sequences(run.path / "sequences.parquet", source.sequences, source.times)

    index = {item: SPECIAL_ROWS + i for i, item in enumerate(vocabulary)}
    users = [u for u in held.train if held.train[u]]
    batches = SequenceBatches([np.asarray([index[i] for i in held.train[u]], np.int32) for u in users],
                              model.window, int(batch_size), int(seed),
                              times=[held.train_times[u] for u in users] if held.train_times and hp["time_buckets"]
                              else None, repeats=int(hp["repeats"]))
    popularity = -np.arange(len(vocabulary), dtype=np.float64)  # the vocabulary is most-clicked first
    evaluate_valid = evaluation.Evaluator(encoder, vocabulary, held.train, held.valid, times=held.train_times,
                                          popularity=popularity, neighbours=hp["knn_neighbours"])
    early = (evaluate_valid.head if model.predicts_items else evaluate_valid.knn)
    # Every ranking metric becomes a validation curve; the early-stopping one decides.
    validate = (lambda: Validation(score=(m := early())[evaluation.EARLY_STOPPING], scalars=m)) \
        if len(evaluate_valid) else None
    decay = int(epochs) * batches.batches_per_epoch if hp["schedule"] == "cosine" else None
    result = fit(model, run, config, batches, validate, metric=f"valid_{evaluation.EARLY_STOPPING}", log=log,
                 on_batch=on_batch, jit_compile=True, decay_steps=decay)
    restore_weights(model, run.best)
    save_encoder(encoder, run.path / "encoder")
    write_projector(run.path, [item_rows(encoder, vocabulary, held.train, source.domains)])
    history = run.read_history()
    train_seconds = float(sum(entry.get("seconds", 0.0) for entry in history))
    # Items read per epoch (window copies beyond the first are shorter on average: an upper bound there).
    trained_events = int(np.minimum(batches.lengths, model.window).sum()) * int(hp["repeats"]) * len(history)
    tables = {"valid": evaluate_valid.table(hp["objective"], model.predicts_items)}
    protocols = {"valid": _protocol(held.valid, evaluate_valid, vocabulary)}
    if held.test is not None:
        evaluate_test = evaluation.Evaluator(encoder, vocabulary, held.before_test, held.test,
                                             times=held.before_test_times, popularity=popularity,
                                             neighbours=hp["knn_neighbours"])
        tables["test"] = evaluate_test.table(hp["objective"], model.predicts_items)
        protocols["test"] = _protocol(held.test, evaluate_test, vocabulary)
    metrics: PretrainMetrics = {"model": MODEL, "objective": hp["objective"], "architecture": hp["architecture"],
               "pooling": hp["pooling"], "causal": hp["causal"], "negatives": negatives, "exclude_seen": exclude_seen,
               "softmax": "full" if negatives == 0 or negatives >= len(vocabulary) else f"sampled ({negatives})",
               "best_epoch": result.best_epoch, f"best_valid_{evaluation.EARLY_STOPPING}": result.best_score,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
               "early_stopping": ("item head" if model.predicts_items else evaluation.KNN)
               + f" {evaluation.EARLY_STOPPING} on the validation queries",
               "user_vector": USER_VECTOR[hp["pooling"]], "data": data_summary, "protocols": protocols,
               "tables": tables, "training_seconds": round(train_seconds, 1),
               "training_events_per_s": round(trained_events / train_seconds, 1) if train_seconds else None,
               "seconds": round(time.time() - started, 1)}
    atomic_write_json(run.metrics_path, metrics)
    return metrics


USER_VECTOR = {
    "last": "the last position's state: what the next-item head scores (state . item embedding + item bias)",
    "mask": "the state of a [MASK] appended after the history: what the next-item head scores",
    "cls": "the [CLS] token's state (no next-item head reads it)",
    "mean": "the mean of the states over the history (no next-item head reads it)",
}


def _protocol(queries, evaluator: evaluation.Evaluator, vocabulary: list[str]) -> dict:
    return {"protocol": queries.protocol, **queries.counts,
            "targets_outside_vocabulary": int((evaluator.task.targets < 0).sum()),
            "removed_from_ranking": "each user's earlier items",
            "ranked_against": f"all {len(vocabulary):,} vocabulary items"}


def _data_summary(source: SourceData, train: dict[str, list[str]], vocabulary: list[str],
                  attributes: dict, max_length: int) -> dict:
    lengths = np.asarray([len(s) for s in train.values()] or [0])
    return {"source": source.path, "domains": source.domains, "rows": source.rows, "clicks": source.clicks,
            "users": len(source.sequences), "items": len(vocabulary), "training_clicks": int(lengths.sum()),
            "sequence_length": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                                "max": int(lengths.max()), "truncated_to_max_length": int((lengths > max_length).sum())},
            "attributes": {name: {"values": len(t["vocabulary"]),
                                  "items_without_value": sum(1 for v in t["items"] if not v)}
                           for name, t in attributes.items()}}


def results_table(metrics: dict, split: str = "valid") -> pd.DataFrame:
    """metrics.json's ranking rows of ``split`` as a table indexed by model."""
    rows = metrics["tables"].get(split, [])
    if not rows:
        return pd.DataFrame(columns=["model"]).set_index("model")
    return pd.DataFrame(rows).set_index("model")


def write_sequences(path: Path, sequences: dict[str, list[str]], times: dict[str, list[int]] | None) -> None:
    users = sorted(sequences)
    frame = pd.DataFrame({"user": users, "items": [list(sequences[u]) for u in users]})
    if times is not None:
        frame["times"] = [[int(t) for t in times[u]] for u in users]
    atomic_write_table(frame, path, "parquet")


def save_encoder(encoder: UserEncoder, folder: Path) -> None:
    with atomic_directory(folder) as tmp:
        tf.train.Checkpoint(encoder=encoder).write(str(tmp / "weights"))


# ---- user vectors of raw sequences --------------------------------------------------------------

def encoder_inputs(sequences: Sequence[Sequence[str]], times: Sequence[Sequence[int]] | None, max_length: int,
                   time_buckets: int) -> dict[str, np.ndarray]:
    """Serving inputs of raw sequences: items tf.string-ready [N, max_length] (and times)."""
    inputs = {ITEMS: sequence_matrix(sequences, max_length)}
    if time_buckets:
        inputs[TIMES] = sequence_matrix(times, max_length, fill=0) if times is not None \
            else np.zeros(inputs[ITEMS].shape, np.int64)
    return inputs


def user_vectors(encoder: UserEncoder, inputs: dict[str, np.ndarray], batch_size: int = 512) -> np.ndarray:
    """The encoder's user vectors of ``inputs`` (items [N, L], and times with time buckets)."""
    step = getattr(encoder, "_mdrec_vectors", None)
    if step is None:
        step = tf.function(lambda x: encoder(x, training=False), input_signature=[encoder.input_signature()],
                           autograph=False)
        encoder._mdrec_vectors = step
    rows = len(inputs[ITEMS])
    if not rows:
        return np.zeros((0, encoder.dim), np.float32)
    return np.concatenate([step({k: tf.constant(v[s:s + batch_size]) for k, v in inputs.items()}).numpy()
                           for s in range(0, rows, batch_size)])


# ---- loading ------------------------------------------------------------------------------------

@dataclass
class Pretrained:
    """A finished pretraining run.

    encoder: the UserEncoder with its best weights; config: every hyperparameter (objective,
    architecture, dim, max_length, domains, ...) and the run's training settings; item_vocabulary;
    sequences: user id -> the user's source-line items in --data (oldest first); times: the same
    users' event times (None without a time column); spec: the run's spec.
    """

    path: Path
    encoder: UserEncoder
    config: dict
    item_vocabulary: list[str]
    sequences: dict[str, list[str]]
    times: dict[str, list[int]] | None
    spec: Spec

    def inputs(self, users: Sequence[str]) -> dict[str, np.ndarray]:
        """The encoder inputs of ``users`` (empty sequences for users without source history)."""
        empty: list = []
        return encoder_inputs([self.sequences.get(str(u), empty) for u in users],
                              [self.times.get(str(u), empty) for u in users] if self.times is not None else None,
                              self.encoder.max_length, self.encoder.time_buckets)

    def user_vectors(self, users: Sequence[str], batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 [N, dim], has_history bool [N]); users without source history get zeros."""
        has = np.asarray([bool(self.sequences.get(str(u))) for u in users], dtype=bool)
        vectors = np.zeros((len(users), self.encoder.dim), np.float32)
        if has.any():
            rows = np.flatnonzero(has)
            vectors[rows] = user_vectors(self.encoder, self.inputs([users[i] for i in rows]), batch_size)
        return vectors, has


def load_pretrained(run_dir: str | Path) -> Pretrained:
    """Load a finished ``mdrec pretrain`` run (see :class:`Pretrained`)."""
    run = RunDir(run_dir)
    if not run.exists():
        raise MdrecError("not a pretraining run folder (no config.json)", path=str(run.path),
                         hint="pass a folder written by `mdrec pretrain --out`")
    raw = json.loads(run.config_path.read_text())
    config = raw.get("config", {})
    if config.get("model") != MODEL:
        raise MdrecError(f"not a pretraining run (its model is '{config.get('model')}')", path=str(run.path),
                         hint="pass a folder written by `mdrec pretrain --out`")
    if not (run.path / "encoder").is_dir() or not run.metrics_path.is_file():
        raise MdrecError("the pretraining run has not finished (encoder/ or metrics.json is missing)",
                         path=str(run.path), hint="run the same `mdrec pretrain` command again to finish it")
    hp = config["hyperparameters"]
    stored = json.loads((run.path / "vocabulary.json").read_text())
    try:
        encoder = UserEncoder(stored["items"], attributes=stored["attributes"], name="user_encoder",
                              **encoder_kwargs(hp))
    except (TypeError, KeyError, ValueError):
        encoder = None
    status = None
    if encoder is not None:
        encoder.build_variables()
        status = tf.train.Checkpoint(encoder=encoder).read(str(run.path / "encoder" / "weights")).expect_partial()
    try:
        if status is None:
            raise AssertionError
        status.assert_existing_objects_matched()
    except AssertionError:
        raise MdrecError("the encoder weights do not fit the encoder config.json describes (pretrained by an "
                         "older mdrec version?)", path=str(run.path),
                         hint="pretrain the run again with this mdrec version") from None
    frame = pd.read_parquet(run.path / "sequences.parquet")
    users = frame["user"].astype(str).tolist()
    sequences = {u: [str(i) for i in items] for u, items in zip(users, frame["items"])}
    times = ({u: [int(t) for t in ts] for u, ts in zip(users, frame["times"])} if "times" in frame else None)
    flat = {**{k: v for k, v in config.items() if k != "hyperparameters"}, **hp}
    return Pretrained(run.path, encoder, flat, list(stored["items"]), sequences, times, run.load_spec())


def evaluate_pretrained(run_dir: str | Path, data: str | Path, *, out: str | Path | None = None) -> dict:
    """``mdrec evaluate --run PRETRAIN_RUN --data LOG``: each user's first click in ``LOG`` ranked
    after everything the run saw of the user (its --data clicks, then its --valid clicks), by the
    tables of :mod:`mdrec.pretraining.evaluation`. Returns (and with ``out`` writes) {"protocol", "table"}."""
    pretrained = load_pretrained(run_dir)
    config = pretrained.config
    sequences, times = pretrained.sequences, pretrained.times
    if config.get("valid"):
        if not Path(config["valid"]).exists():
            raise MdrecError(f"the run's validation log {config['valid']} is gone, and the histories include its "
                             "clicks", path=str(pretrained.path), hint="put the file back at that path")
        seen = load_source(Path(config["valid"]), pretrained.spec, config["domains"], prepared=False)
        joined = held_out_queries(SourceData("", [], sequences, times), seen)
        sequences, times = joined.before_test, joined.before_test_times
    held = load_source(Path(data), pretrained.spec, config["domains"], prepared=False)
    queries = queries_against("evaluate_log", sequences, times, held.sequences)
    vocabulary = pretrained.item_vocabulary
    evaluator = evaluation.Evaluator(pretrained.encoder, vocabulary, sequences, queries, times=times,
                                     popularity=-np.arange(len(vocabulary), dtype=np.float64),
                                     neighbours=config["knn_neighbours"])
    predicts_items = config["objective"] != "contrastive" or float(config.get("next_item_weight", 0)) > 0
    result = {"run": str(pretrained.path), "data": str(data), "protocol": _protocol(queries, evaluator, vocabulary),
              "table": evaluator.table(config["objective"], predicts_items)}
    if out is not None:
        atomic_write_json(out, result)
    return result


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
