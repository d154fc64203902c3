"""``mdrec pretrain``: a user encoder pretrained on one business line's behaviour sequences.

runs/NAME/
  config.json        model "user_encoder"; objective, architecture and every hyperparameter; data
                     paths and fingerprints (a run folder like any other: same resume rules)
  spec.yaml          the spec as used
  vocabulary.json    the item vocabulary (most frequent first) and the item -> attribute tables
  sequences.parquet  every user's source-line clicks (last max_length, oldest first; with times
                     when the spec has a time column): what transfer looks a target user up in
  checkpoints/       the latest training state (resume point); best/ the best epoch's weights
  encoder/           the best encoder's weights alone (what :func:`load_pretrained` restores)
  history.json       per epoch: train loss and the validation recall@10
  metrics.json       validation tables: the objective's own item head (mlm: the masked last item;
                     autoregressive: the next item), a user-vector k-nearest-neighbour probe (every
                     objective, contrastive's early-stopping score: a user's items are scored by the
                     items of the users whose pretrained vectors are nearest), the same kNN on raw
                     item sets (cosine of the users' clicked items, no encoder) and popularity

Early stopping on validation recall@10 (the head's, or the probe's for contrastive). The model
trains with :func:`mdrec.training.loop.fit`, so a run killed at any point resumes from its last
checkpoint when the same command runs again.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json, atomic_write_table
from mdrec.models.user_encoder import ITEMS, SPECIAL_ROWS, TIMES, UserEncoder
from mdrec.pretraining import objectives as obj
from mdrec.pretraining.data import (SourceData, Validation, attribute_tables, item_vocabulary, load_source,
                                    resolve_source, sequence_matrix, split_validation)
from mdrec.spec import Spec, load_spec
from mdrec.training.run import RunDir, TrainConfig, fingerprint

MODEL = "user_encoder"
OBJECTIVES = ("mlm", "autoregressive", "contrastive")
KS = (10, 50)
EARLY_STOPPING = "recall@10"
POPULARITY = "popularity"
KNN = "user-vector kNN"
ITEM_SET_KNN = "baseline: user kNN on item sets"
Printer = Callable[[str], None]

# Every hyperparameter of a pretraining run, with its default (written out in config.json).
DEFAULTS: dict[str, Any] = {
    "objective": "mlm", "architecture": None, "pooling": None, "attributes": [], "domains": [],
    "dim": 64, "layers": 2, "heads": 2, "max_length": 50, "dropout": 0.1, "time_buckets": 0,
    "mask_rate": 0.15, "attribute_weight": 1.0, "negatives": 256, "temperature": 0.1,
    "crop": 0.6, "mask": 0.3, "reorder": 0.6, "knn_neighbours": 50, "max_valid_users": 10000,
    "repeats": 10,
}
ENCODER_KEYS = ("architecture", "dim", "layers", "heads", "max_length", "pooling", "dropout", "time_buckets")


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
        hp["architecture"] = "nextitnet" if objective == "autoregressive" else "transformer"
    if hp["architecture"] not in ("transformer", "nextitnet"):
        raise MdrecError(f"unknown --architecture '{hp['architecture']}'", hint="use transformer or nextitnet")
    if objective == "mlm" and hp["architecture"] == "nextitnet":
        raise MdrecError("--objective mlm predicts a masked item from both sides, and nextitnet is causal",
                         hint="use --architecture transformer (or --objective autoregressive for nextitnet)")
    causal = hp["architecture"] == "nextitnet" or objective == "autoregressive"
    if hp["pooling"] is None:
        hp["pooling"] = "last" if causal else ("cls" if objective == "contrastive" else "mean")
    if causal and hp["pooling"] == "cls":
        raise MdrecError(f"--pooling cls needs a bidirectional encoder, and {objective} with "
                         f"{hp['architecture']} is causal", hint="use --pooling last or mean")
    if not causal and hp["pooling"] == "last":
        raise MdrecError("--pooling last is for causal encoders (autoregressive, nextitnet)",
                         hint="use --pooling cls or mean")
    if hp["pooling"] not in ("cls", "mean", "last"):
        raise MdrecError(f"unknown --pooling '{hp['pooling']}'", hint="use cls, mean or last")
    for key in ("dim", "layers", "heads", "max_length", "repeats"):
        if int(hp[key]) < 1:
            raise MdrecError(f"--{key.replace('_', '-')} must be at least 1, got {hp[key]}")
    if hp["architecture"] == "transformer" and hp["dim"] % hp["heads"]:
        raise MdrecError(f"--dim {hp['dim']} is not divisible by --heads {hp['heads']}",
                         hint="pick a dim that is a multiple of heads, e.g. --dim 64 --heads 2")
    if objective == "mlm" and hp["max_length"] < 2:
        raise MdrecError("--max-length must be at least 2 for mlm (the validation query is the history and a [MASK])")
    if not 0.0 < float(hp["mask_rate"]) < 1.0:
        raise MdrecError(f"--mask-rate must be between 0 and 1, got {hp['mask_rate']}")
    if float(hp["temperature"]) <= 0:
        raise MdrecError(f"--temperature must be positive, got {hp['temperature']}")
    if int(hp["negatives"]) < 0:
        raise MdrecError(f"--negatives must be >= 0 (0: full softmax), got {hp['negatives']}")
    if int(hp["time_buckets"]) < 0:
        raise MdrecError(f"--time-buckets must be >= 0, got {hp['time_buckets']}")
    if int(hp["time_buckets"]) and not spec.time:
        raise MdrecError(f"--time-buckets needs event times and spec '{spec.name}' has no time column",
                         path=spec.source, hint="drop --time-buckets, or add `time: {column: ...}` to the spec")
    hp["causal"] = causal
    return hp


def encoder_kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    return {**{key: hp[key] for key in ENCODER_KEYS}, "causal": hp["causal"]}


# ---- the training model -------------------------------------------------------------------------

class PretrainModel(tf_keras.Model):
    """The encoder plus its objective's heads. ``training_loss(x, y)`` (y unused) gives the batch
    loss for :func:`mdrec.training.loop.fit`; ``call`` gives the user vectors."""

    def __init__(self, encoder: UserEncoder, objective: str, *, negatives: int = 256, mask_rate: float = 0.15,
                 temperature: float = 0.1, attribute_weight: float = 1.0, crop: float = 0.6, mask: float = 0.3,
                 reorder: float = 0.6, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.objective = objective
        self.negatives, self.mask_rate, self.temperature = int(negatives), float(mask_rate), float(temperature)
        self.attribute_weight = float(attribute_weight)
        self.augmentation = {"crop": float(crop), "mask": float(mask), "reorder": float(reorder)}
        self.rng = tf.random.Generator.from_seed(seed)  # masks, negatives, views: resumes with the checkpoint
        dim = encoder.dim
        self.attribute_heads: dict[str, tf_keras.layers.Dense] = {}
        if objective == "contrastive":
            self.projection = [tf_keras.layers.Dense(dim, activation="relu", name="projection_0"),
                               tf_keras.layers.Dense(dim, name="projection_1")]
        else:
            self.head_dense = tf_keras.layers.Dense(dim, activation="gelu", name="head_dense")
            self.head_norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name="head_norm")
            self.item_bias = self.add_weight("item_bias", shape=[encoder.num_items], initializer="zeros")
            if objective == "mlm":
                for name, table in encoder.attribute_config.items():
                    self.attribute_heads[name] = tf_keras.layers.Dense(len(table["vocabulary"]) + SPECIAL_ROWS + 1,
                                                                       name=f"{name}_head")

    def call(self, inputs, training: bool = False) -> tf.Tensor:
        return self.encoder(inputs, training=training)

    def build_variables(self, sample: dict) -> None:
        self.encoder({k: tf.constant(v) for k, v in sample.items()}, training=False)
        dim = self.encoder.dim
        if self.objective == "contrastive":
            self.projection[0].build([None, dim])
            self.projection[1].build([None, dim])
        else:
            self.head_dense.build([None, dim])
            self.head_norm.build([None, dim])
            for head in self.attribute_heads.values():
                head.build([None, dim])

    def item_hidden(self, states: tf.Tensor) -> tf.Tensor:
        """States -> the vectors scored against the (tied) item embeddings."""
        return self.head_norm(self.head_dense(states))

    def item_scores(self, hidden: tf.Tensor) -> tf.Tensor:
        """Scores of every vocabulary item [n, V]."""
        return tf.matmul(hidden, self.encoder.item_output_table(), transpose_b=True) + self.item_bias

    def _item_loss(self, states: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor
                   ) -> tuple[tf.Tensor, tf.Tensor]:
        select = tf.logical_and(weights > 0, targets >= SPECIAL_ROWS)
        hidden = self.item_hidden(tf.boolean_mask(states, select))
        items = tf.boolean_mask(targets, select) - SPECIAL_ROWS
        losses = obj.item_softmax_loss(hidden, items, self.encoder.item_output_table(), self.item_bias,
                                       self.negatives, self.rng)
        return tf.reduce_sum(losses) / tf.maximum(tf.cast(tf.size(losses), tf.float32), 1.0), select

    @tf.autograph.experimental.do_not_convert  # plain Python control flow only: skip autograph's slow rewrite
    def training_loss(self, x: dict, y=None) -> tf.Tensor:
        encoder = self.encoder
        ids = encoder.item_ids(x[ITEMS])
        times = x.get(TIMES) if encoder.time_buckets else None
        if times is not None:
            times = tf.cast(times, tf.int64)
        if self.objective == "mlm":
            inputs, targets, weights = obj.mlm_mask(ids, self.mask_rate, self.rng, encoder.mask_id)
            states, _ = encoder.encode_ids(inputs, times, training=True)
            loss, select = self._item_loss(states, targets, weights)
            for name, head in self.attribute_heads.items():
                values = encoder.attribute_ids(name, tf.boolean_mask(targets, select))
                logits = head(tf.boolean_mask(states, select))
                known = tf.cast(values >= SPECIAL_ROWS, tf.float32)  # items with no value are not targets
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=values, logits=logits)
                loss += self.attribute_weight * obj.weighted_mean(ce, known)
            return loss
        if self.objective == "autoregressive":
            states, _ = encoder.encode_ids(ids, times, training=True)
            targets, weights = obj.next_item_targets(ids)
            return self._item_loss(states, targets, weights)[0]
        views = []
        for _ in range(2):
            view, view_times = obj.augment(ids, self.rng, encoder.mask_id, times=times, **self.augmentation)
            states, cls = encoder.encode_ids(view, view_times, training=True)
            vector = encoder.pool(states, cls, view)
            for layer in self.projection:
                vector = layer(vector)
            views.append(vector)
        return tf.reduce_mean(obj.info_nce(views[0], views[1], self.temperature))


# ---- evaluation ---------------------------------------------------------------------------------

def _batched(fn: Callable, arrays: dict[str, np.ndarray], batch_size: int = 1024) -> np.ndarray:
    rows = len(next(iter(arrays.values())))
    parts = [fn({k: tf.constant(v[start:start + batch_size]) for k, v in arrays.items()}).numpy()
             for start in range(0, rows, batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def encoder_inputs(sequences: Sequence[Sequence[str]], times: Sequence[Sequence[int]] | None, max_length: int,
                   time_buckets: int) -> dict[str, np.ndarray]:
    inputs = {ITEMS: sequence_matrix(sequences, max_length)}
    if time_buckets:
        inputs[TIMES] = sequence_matrix(times, max_length, fill=0) if times is not None \
            else np.zeros(inputs[ITEMS].shape, np.int64)
    return inputs


def user_vectors(encoder: UserEncoder, inputs: dict[str, np.ndarray], batch_size: int = 1024) -> np.ndarray:
    """The encoder's user vectors of ``inputs`` (items [N, L], and times with time buckets)."""
    step = getattr(encoder, "_mdrec_vectors", None)
    if step is None:
        step = tf.function(lambda x: encoder(x, training=False), input_signature=[encoder.input_signature()],
                           autograph=False)
        encoder._mdrec_vectors = step
    if not len(inputs[ITEMS]):
        return np.zeros((0, encoder.dim), np.float32)
    return _batched(step, inputs, batch_size)


@dataclass
class RankingTask:
    """Validation queries with their targets as vocabulary indices (-1: outside the vocabulary)
    and the items removed from each query's ranking (its training items)."""

    validation: Validation
    targets: np.ndarray
    excluded: list[np.ndarray]
    vocabulary_size: int

    @classmethod
    def build(cls, validation: Validation, vocabulary: list[str]) -> "RankingTask":
        index = {item: i for i, item in enumerate(vocabulary)}
        targets = np.asarray([index.get(t, -1) for t in validation.targets], np.int64)
        excluded = [np.unique(np.asarray([index[i] for i in history if i in index], np.int64))
                    for history in validation.histories]
        return cls(validation, targets, excluded, len(vocabulary))

    def metrics(self, scores_of: Callable[[np.ndarray], np.ndarray], chunk: int = 512) -> dict[str, float]:
        """Recall@K and NDCG@K (one target per query) of ``scores_of(query positions) -> [q, V]``;
        ties broken by vocabulary order (the more popular item first)."""
        ranks = np.full(len(self.targets), np.inf)
        items = np.arange(self.vocabulary_size)
        for start in range(0, len(self.targets), chunk):
            rows = np.arange(start, min(start + chunk, len(self.targets)))
            scores = np.array(scores_of(rows), dtype=np.float64, copy=True)
            for offset, row in enumerate(rows):
                scores[offset, self.excluded[row]] = -np.inf
            targets = self.targets[rows]
            known = targets >= 0
            own = scores[np.arange(len(rows)), np.where(known, targets, 0)][:, None]
            ahead = (scores > own).sum(1) + ((scores == own) & (items[None, :] < targets[:, None])).sum(1)
            ranks[rows[known]] = ahead[known]
        out = {}
        for k in KS:
            hit = ranks < k
            out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else float("nan")
            gain = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
            out[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else float("nan")
        return out


def head_queries(model: PretrainModel, task: RankingTask, max_length: int) -> tuple[np.ndarray, Callable]:
    """The item head's hidden vectors of every validation query [Q, dim] and a scorer over them.

    mlm: the history (last max_length - 1 items) with a [MASK] appended, the [MASK] position's
    state; autoregressive: the history's last position's state."""
    encoder = model.encoder
    validation = task.validation
    room = max_length - 1 if model.objective == "mlm" else max_length
    inputs = encoder_inputs(validation.histories, validation.history_times, room, encoder.time_buckets)
    ids = encoder.item_ids(tf.constant(inputs[ITEMS])).numpy()
    lengths = (ids != 0).sum(1)
    if model.objective == "mlm":
        ids = np.concatenate([ids, np.zeros((len(ids), 1), ids.dtype)], axis=1)
        ids[np.arange(len(ids)), lengths] = encoder.mask_id
        position = lengths
        if TIMES in inputs:  # the [MASK] happens right after the last event (a zero gap)
            times = np.concatenate([inputs[TIMES], np.zeros((len(ids), 1), np.int64)], axis=1)
            times[np.arange(len(ids)), lengths] = times[np.arange(len(ids)), np.maximum(lengths - 1, 0)]
            inputs[TIMES] = times
    else:
        position = np.maximum(lengths - 1, 0)
    arrays = {"ids": ids.astype(np.int32), "position": position.astype(np.int32)}
    if TIMES in inputs:
        arrays[TIMES] = inputs[TIMES]

    hidden_of = getattr(model, "_mdrec_head_hidden", None)
    if hidden_of is None:  # one trace per model, not one per validation
        def hidden(x):
            states, _ = encoder.encode_ids(x["ids"], x.get(TIMES), training=False)
            return model.item_hidden(tf.gather(states, x["position"], axis=1, batch_dims=1))

        hidden_of = tf.function(hidden, reduce_retracing=True, autograph=False)
        model._mdrec_head_hidden = hidden_of
    hidden = _batched(hidden_of, arrays)
    table = encoder.item_output_table().numpy()
    bias = model.item_bias.numpy()
    return hidden, lambda rows: hidden[rows] @ table.T + bias


def knn_scorer(similarity: Callable[[np.ndarray], np.ndarray], user_rows: np.ndarray, item_matrix: sp.csr_matrix,
               neighbours: int) -> Callable[[np.ndarray], np.ndarray]:
    """User kNN: a query's item scores are the items of its ``neighbours`` most similar other users,
    weighted by the (positive) similarity. ``similarity(user rows) -> [q, users]``."""
    users = item_matrix.shape[0]
    k = max(1, min(neighbours, users - 1))

    def scores_of(rows: np.ndarray) -> np.ndarray:
        own = user_rows[rows]
        sims = np.array(similarity(own), dtype=np.float64)
        sims[np.arange(len(rows)), own] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
        graph = sp.csr_matrix((weights.ravel(), top.ravel(), np.arange(0, len(rows) * k + 1, k)),
                              shape=(len(rows), users))
        return (graph @ item_matrix).toarray()

    return scores_of


def cosine_rows(vectors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Cosine similarity of the given users' vectors to every user's (the encoder's user vectors)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return lambda rows: unit[rows] @ unit.T


def cosine_item_sets(matrix: sp.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
    """Cosine similarity of the users' raw item sets (classic user-based CF, no encoder)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(1)).ravel())
    unit = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix
    transposed = unit.T.tocsr()
    return lambda rows: (unit[rows] @ transposed).toarray()


def item_matrix(sequences: list[list[str]], vocabulary: list[str]) -> sp.csr_matrix:
    """Users x items, 1 where the user's sequence holds the item."""
    index = {item: i for i, item in enumerate(vocabulary)}
    rows, cols = [], []
    for row, items in enumerate(sequences):
        columns = {index[i] for i in items if i in index}
        rows += [row] * len(columns)
        cols += sorted(columns)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sequences), len(vocabulary)))


class Evaluator:
    """Validation of a pretraining run: the head, the kNN probe and popularity (see the module doc)."""

    def __init__(self, model: PretrainModel, hp: dict, vocabulary: list[str], train: dict[str, list[str]],
                 train_times: dict[str, list[int]] | None, validation: Validation):
        self.model, self.hp, self.vocabulary = model, hp, vocabulary
        self.task = RankingTask.build(validation, vocabulary)
        self.users = list(train)
        self.user_row = {u: i for i, u in enumerate(self.users)}
        self.inputs = encoder_inputs([train[u] for u in self.users],
                                     [train_times[u] for u in self.users] if train_times is not None else None,
                                     hp["max_length"], hp["time_buckets"])
        self.matrix = item_matrix([train[u] for u in self.users], vocabulary)
        self.query_rows = np.asarray([self.user_row[u] for u in validation.users], np.int64)

    def head(self) -> dict[str, float]:
        _, scorer = head_queries(self.model, self.task, self.hp["max_length"])
        return self.task.metrics(scorer)

    def knn(self) -> dict[str, float]:
        vectors = user_vectors(self.model.encoder, self.inputs)
        return self.task.metrics(knn_scorer(cosine_rows(vectors), self.query_rows, self.matrix,
                                            self.hp["knn_neighbours"]))

    def item_set_knn(self) -> dict[str, float]:
        return self.task.metrics(knn_scorer(cosine_item_sets(self.matrix), self.query_rows, self.matrix,
                                            self.hp["knn_neighbours"]))

    def popularity(self) -> dict[str, float]:
        # The vocabulary is most-clicked first (training sequences), so popularity is its order.
        order = -np.arange(len(self.vocabulary), dtype=np.float64)
        return self.task.metrics(lambda rows: np.broadcast_to(order, (len(rows), len(order))))

    def early_stopping(self) -> float:
        if not len(self.task.targets):
            return float("nan")
        return (self.knn() if self.model.objective == "contrastive" else self.head())[EARLY_STOPPING]

    def tables(self) -> list[dict]:
        rows = []
        if len(self.task.targets):
            if self.model.objective != "contrastive":
                what = "masked last item" if self.model.objective == "mlm" else "next item"
                rows.append({"model": f"{self.model.objective} head ({what})", **self.head()})
            rows.append({"model": KNN, **self.knn()})
            rows.append({"model": ITEM_SET_KNN, **self.item_set_knn()})
            rows.append({"model": POPULARITY, **self.popularity()})
        return rows


# ---- the run ------------------------------------------------------------------------------------

def pretrain_run(spec_path: str | Path, data: str | Path, out: str | Path, *, valid: str | Path | None = None,
                 epochs: int = 10, batch_size: int = 256, learning_rate: float = 1e-3, patience: int = 2,
                 seed: int = 0, checkpoint_every: int = 100, overwrite: bool = False, log: Printer = print,
                 on_batch: Callable[[int], None] | None = None, **hyperparameters) -> dict:
    """Pretrain a user encoder on ``data``'s click sequences into run folder ``out`` (resumes)."""
    from mdrec.training.loop import InMemoryEpochs, fit, restore_weights

    started = time.time()
    spec = load_spec(spec_path)
    hp = resolve_hyperparameters(hyperparameters, spec)
    for name, value in (("epochs", epochs), ("batch-size", batch_size)):
        if int(value) < 1:
            raise MdrecError(f"--{name} must be at least 1, got {value}")
    source_path = resolve_source(data)
    valid_path = str(Path(valid).resolve()) if valid else None
    config = TrainConfig(model=MODEL, train=str(Path(source_path).resolve()), valid=valid_path, epochs=int(epochs),
                         batch_size=int(batch_size), learning_rate=float(learning_rate), patience=int(patience),
                         seed=int(seed), checkpoint_every=int(checkpoint_every), hyperparameters=hp)
    run = RunDir(out)
    if run.exists():
        raw = json.loads(run.config_path.read_text())
        previous = raw.get("config", {})
        current = asdict(config)
        if previous != current:
            if not overwrite:
                changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
                raise MdrecError(f"run folder holds a run with a different configuration ({', '.join(changed)})",
                                 path=str(run.path), hint="use a new --out, or --overwrite to start over")
            shutil.rmtree(run.path)

    log(f"reading {source_path}" + (f" (lines {', '.join(hp['domains'])})" if hp["domains"] else ""))
    source = load_source(source_path, spec, hp["domains"], hp["attributes"])
    valid_source = load_source(valid_path, spec, hp["domains"], prepared=False) if valid_path else None
    train, train_times, validation = split_validation(source, valid_source, hp["max_valid_users"], seed)
    vocabulary_path = run.path / "vocabulary.json"
    if vocabulary_path.is_file():
        stored = json.loads(vocabulary_path.read_text())
        vocabulary, attributes = stored["items"], stored["attributes"]
    else:
        vocabulary = item_vocabulary(train)
        attributes = attribute_tables(source.attributes, vocabulary)
    try:
        encoder = UserEncoder(vocabulary, attributes=attributes, name="user_encoder", **encoder_kwargs(hp))
    except ValueError as exc:
        raise MdrecError(f"user encoder: {exc}") from None
    model = PretrainModel(encoder, hp["objective"], negatives=hp["negatives"], mask_rate=hp["mask_rate"],
                          temperature=hp["temperature"], attribute_weight=hp["attribute_weight"], crop=hp["crop"],
                          mask=hp["mask"], reorder=hp["reorder"], seed=seed)
    lengths = np.asarray([len(s) for s in source.sequences.values()])
    data_summary = {"source": source.path, "domains": source.domains, "rows": source.rows, "clicks": source.clicks,
                    "users": len(source.sequences), "items": len(vocabulary),
                    "sequence_length": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                                        "max": int(lengths.max()), "truncated_to_max_length": int((lengths > hp["max_length"]).sum())},
                    "attributes": {name: {"values": len(t["vocabulary"]),
                                          "items_without_value": sum(1 for v in t["items"] if not v)}
                                   for name, t in attributes.items()}}
    log(f"{data_summary['users']:,} users, {data_summary['clicks']:,} clicks, {len(vocabulary):,} items "
        f"(median sequence {data_summary['sequence_length']['median']:.0f}); validation: {len(validation):,} "
        f"held-out items ({validation.protocol})")
    if not run.exists():
        fingerprints = {name: fingerprint(path) for name, path in (("train", config.train), ("valid", config.valid)) if path}
        run.write_config(config, spec, fingerprints)
        atomic_write_json(vocabulary_path, {"items": vocabulary, "attributes": attributes})
        write_sequences(run.path / "sequences.parquet", source, hp["max_length"])

    users = list(train)
    inputs = encoder_inputs([train[u] for u in users], [train_times[u] for u in users] if train_times else None,
                            hp["max_length"], hp["time_buckets"])
    # One sequence per user is few steps per epoch; each repeat draws fresh masks / views / crops.
    repeats = int(hp["repeats"])
    inputs = {k: np.concatenate([v] * repeats) for k, v in inputs.items()}
    epochs_data = InMemoryEpochs(inputs, np.zeros(len(users) * repeats, np.float32), int(batch_size), int(seed))
    evaluator = Evaluator(model, hp, vocabulary, train, train_times, validation)
    validate = evaluator.early_stopping if len(validation) else None
    result = fit(model, run, config, epochs_data, validate, metric=f"valid_{EARLY_STOPPING}", log=log,
                 on_batch=on_batch)
    restore_weights(model, run.best)
    save_encoder(encoder, run.path / "encoder")
    tables = evaluator.tables()
    metrics = {"model": MODEL, "objective": hp["objective"], "architecture": hp["architecture"],
               "pooling": hp["pooling"], "best_epoch": result.best_epoch,
               f"best_valid_{EARLY_STOPPING}": result.best_score, "epochs_run": result.epochs_run,
               "stopped_early": result.stopped_early, "early_stopping": (KNN if hp["objective"] == "contrastive"
                                                                         else "item head") + f" {EARLY_STOPPING}",
               "data": data_summary,
               "validation": {"protocol": validation.protocol, **validation.counts,
                              "targets_outside_vocabulary": int((evaluator.task.targets < 0).sum()),
                              "removed_from_ranking": "each user's training items",
                              "ranked_against": f"all {len(vocabulary):,} vocabulary items"},
               "tables": {"valid": tables}, "seconds": round(time.time() - started, 1)}
    atomic_write_json(run.metrics_path, metrics)
    return metrics


def validation_table(metrics: dict, split: str = "valid") -> pd.DataFrame:
    """metrics.json's validation rows as a table indexed by model."""
    rows = metrics["tables"].get(split, [])
    if not rows:
        return pd.DataFrame(columns=["model"]).set_index("model")
    return pd.DataFrame(rows).set_index("model")


def write_sequences(path: Path, source: SourceData, max_length: int) -> None:
    users = sorted(source.sequences)
    frame = pd.DataFrame({"user": users, "items": [source.sequences[u][-max_length:] for u in users]})
    if source.times is not None:
        frame["times"] = [[int(t) for t in source.times[u][-max_length:]] for u in users]
    atomic_write_table(frame, path, "parquet")


def save_encoder(encoder: UserEncoder, folder: Path) -> None:
    with atomic_directory(folder) as tmp:
        tf.train.Checkpoint(encoder=encoder).write(str(tmp / "weights"))


# ---- loading ------------------------------------------------------------------------------------

@dataclass
class Pretrained:
    """A finished pretraining run.

    encoder: the UserEncoder with its best weights; config: every hyperparameter (objective,
    architecture, dim, max_length, domains, ...) and the run's training settings; item_vocabulary;
    sequences: user id -> the user's source-line items (oldest first, the last max_length); times:
    the same users' event times (None without a time column); spec: the run's spec.
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

    def user_vectors(self, users: Sequence[str], batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
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
    if not (run.path / "encoder").is_dir():
        raise MdrecError("the pretraining run has not finished (encoder/ is missing)", path=str(run.path),
                         hint="run the same `mdrec pretrain` command again to finish it")
    hp = config["hyperparameters"]
    stored = json.loads((run.path / "vocabulary.json").read_text())
    encoder = UserEncoder(stored["items"], attributes=stored["attributes"], name="user_encoder", **encoder_kwargs(hp))
    encoder.build_variables()
    status = tf.train.Checkpoint(encoder=encoder).read(str(run.path / "encoder" / "weights")).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError:
        raise MdrecError("the encoder weights do not fit the encoder config.json describes", path=str(run.path),
                         hint="pretrain the run again with this mdrec version") from None
    frame = pd.read_parquet(run.path / "sequences.parquet")
    users = frame["user"].astype(str).tolist()
    sequences = {u: [str(i) for i in items] for u, items in zip(users, frame["items"])}
    times = ({u: [int(t) for t in ts] for u, ts in zip(users, frame["times"])} if "times" in frame else None)
    flat = {**{k: v for k, v in config.items() if k != "hyperparameters"}, **hp}
    return Pretrained(run.path, encoder, flat, list(stored["items"]), sequences, times, run.load_spec())
