"""A finished ``mdrec pretrain`` run read back: the encoder with its best weights and the sequences
it reads (what transfer, profile and the user_encoder export take), user vectors of raw sequences,
the ranking tables of its metrics.json, and ``mdrec evaluate --run PRETRAIN_RUN`` (the run scored on
a new log).

The run folder is written by :mod:`mdrec.workflows.pretrain`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json
from mdrec.models.user_encoder import ITEMS, TIMES, UserEncoder
from mdrec.pretraining import evaluation
from mdrec.pretraining.data import Queries, SourceData, held_out_queries, load_source, queries_against, sequence_matrix
from mdrec.spec import Spec
from mdrec.training.run import RunDir
from mdrec.workflows.pretrain_hyperparameters import MODEL, encoder_kwargs


def ranking_protocol(queries: Queries, evaluator: evaluation.Evaluator, vocabulary: list[str]) -> dict:
    """How ``queries`` were ranked, as metrics.json records it beside each split's table."""
    return {"protocol": queries.protocol, **queries.counts,
            "targets_outside_vocabulary": int((evaluator.task.targets < 0).sum()),
            "removed_from_ranking": "each user's earlier items",
            "ranked_against": f"all {len(vocabulary):,} vocabulary items"}


def results_table(metrics: dict, split: str = "valid") -> pd.DataFrame:
    """metrics.json's ranking rows of ``split`` as a table indexed by model."""
    rows = metrics["tables"].get(split, [])
    if not rows:
        return pd.DataFrame(columns=["model"]).set_index("model")
    return pd.DataFrame(rows).set_index("model")


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
    result = {"run": str(pretrained.path), "data": str(data),
              "protocol": ranking_protocol(queries, evaluator, vocabulary),
              "table": evaluator.table(config["objective"], predicts_items)}
    if out is not None:
        atomic_write_json(out, result)
    return result
