"""Training and evaluation of retrieval runs (``mdrec train --model two_tower``).

A retrieval model learns from the clicks alone: each training click is a (query, item) pair and
the other items of the batch are its negatives. Early stopping watches Recall@50 of the validation
clicks against the full catalogue; the sanity rows are per-line popularity, ItemKNN and EASE
(``mdrec.evaluation.baselines.retrieval``: fitted on the training clicks, settings chosen on
validation).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.data.catalogue import Catalogue
from mdrec.data.log import DOMAIN, LABEL, Log
from mdrec.data.pipeline import model_inputs, predict_dataset
from mdrec.errors import MdrecError
from mdrec.evaluation.baselines.retrieval import FittedBaseline, baseline_scorers
from mdrec.evaluation.ranking import (KS, RankingQueries, full_ranking, per_domain_table, popularity_scores,
                                      ranking_queries, sampled_ranking)
from mdrec.spec import Spec
from mdrec.training.board import Validation, per_line
from mdrec.training.inference import run_batched

EARLY_STOPPING = "recall@50"
POPULARITY = "baseline: popularity per line"


def query_embeddings(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """float32 [N, dim] for the rows of ``inputs`` (raw query features)."""
    from mdrec.models.two_tower import query_signature

    out = run_batched(model, "_mdrec_query_step", lambda x: model.query_embedding(x, training=False),
                      query_signature(model.spec), inputs)
    return out if len(out) else np.zeros((0, model.embedding_dim), np.float32)


def candidate_embeddings(model, catalogue: Catalogue) -> np.ndarray:
    """float32 [N items, dim] for every catalogue item."""
    from mdrec.models.two_tower import candidate_signature

    return run_batched(model, "_mdrec_candidate_step", lambda x: model.candidate_embedding(x, training=False),
                       candidate_signature(model.spec), catalogue.inputs(model.spec))


def clicks(log: Log, history: np.ndarray | None) -> tuple[Log, np.ndarray | None]:
    """The clicked rows (a retrieval model's training pairs) and their histories."""
    keep = np.flatnonzero(log.frame[LABEL].to_numpy() > 0)
    return log.take(keep), (history[keep] if history is not None else None)


def model_scores(model, spec: Spec, catalogue: Catalogue, log: Log, history: np.ndarray | None,
                 queries: RankingQueries) -> Callable[[np.ndarray], np.ndarray]:
    inputs = model_inputs(log.take(queries.rows), spec, history[queries.rows] if history is not None else None)
    q = query_embeddings(model, inputs)
    c = candidate_embeddings(model, catalogue)
    return lambda positions: q[positions] @ c.T


def retrieval_tables(model, spec: Spec, catalogue: Catalogue, log: Log, history: np.ndarray | None,
                     seen: list[Log], *, sampled: bool = False, negatives: int = 999, seed: int = 0,
                     ks=KS, baselines: Sequence[FittedBaseline] = ()) -> dict:
    """Per-line tables of the model, the popularity row and each fitted ``baselines`` row on
    ``log``'s clicks: {"full": {name: DataFrame}, "sampled": {...} if asked, "counts": {...}}."""
    queries = ranking_queries(log, spec, catalogue, seen)
    scorers = {"model": model_scores(model, spec, catalogue, log, history, queries),
               POPULARITY: popularity_scores(catalogue, queries)}
    scorers.update(baseline_scorers(baselines, queries, seen, spec, catalogue))
    out: dict = {"full": {}, "counts": dict(queries.counts, queries=len(queries))}
    for name, score in scorers.items():
        out["full"][name] = per_domain_table(full_ranking(score, queries, catalogue.membership, ks),
                                             queries.domain, catalogue.domains)
    if sampled:
        out["sampled"] = {}
        for name, score in scorers.items():
            pairs = sampled_ranking(score, queries, catalogue.membership, ks, negatives=negatives, seed=seed)
            out["sampled"][name] = per_domain_table(pairs, queries.domain[pairs["query"]], catalogue.domains,
                                                    count_name="positives")
    return out


def recall_validation(model, spec: Spec, catalogue: Catalogue, valid: Log, history: np.ndarray | None,
                      seen: list[Log], batch_size: int | None = None) -> Callable[[], Validation]:
    """Early-stopping score: mean Recall@50 of the validation clicks against the full catalogue;
    the curves also get recall@10 and NDCG@10, overall and per line, and (with ``batch_size``, the
    training batch size) the validation loss: the training loss on the validation clicks."""
    queries = ranking_queries(valid, spec, catalogue, seen)
    k = int(EARLY_STOPPING.split("@")[1])
    curves = ("recall@10", "ndcg@10", EARLY_STOPPING)
    clicks = train_inputs(valid, spec, history)[0] if batch_size else None

    def validate() -> Validation:
        if len(queries) == 0:
            return Validation(score=float("nan"))
        score = model_scores(model, spec, catalogue, valid, history, queries)
        per_query = full_ranking(score, queries, catalogue.membership, (10, k))
        scalars: dict[str, float] = {"loss": in_batch_loss(model, clicks, batch_size)} if batch_size else {}
        for metric in curves:
            values = {"ALL": per_query[metric].mean()}
            values.update({line: per_query[metric][queries.domain == i].mean()
                           for i, line in enumerate(catalogue.domains) if (queries.domain == i).any()})
            scalars.update(per_line(metric, values))
        return Validation(score=float(per_query[EARLY_STOPPING].mean()), scalars=scalars)

    return validate


def in_batch_loss(model, inputs: dict[str, np.ndarray], batch_size: int) -> float:
    """The training loss's definition on other clicks (``inputs``, in order, batches of
    ``batch_size``): the mean of the batch losses, in inference mode. A batch of one click has no
    in-batch negative and is left out; NaN without a batch of two."""
    step = getattr(model, "_mdrec_loss_step", None)
    if step is None:
        step = tf.function(lambda x: model.training_loss(x, None, training=False), reduce_retracing=True)
        model._mdrec_loss_step = step
    losses = [float(step(batch)) for batch in predict_dataset(inputs, batch_size)
              if int(tf.shape(next(iter(batch.values())))[0]) > 1]
    return float(np.mean(losses)) if losses else float("nan")


def comparison(tables: dict[str, pd.DataFrame], model_name: str, metrics=("recall@10", "ndcg@10", "recall@50",
                                                                           "ndcg@50", "hr@100")) -> pd.DataFrame:
    """Model and baseline side by side: overall metrics, then recall@10 per line."""
    rows = {}
    for name, table in tables.items():
        label = model_name if name == "model" else name
        metric_list = [m for m in metrics if m in table.columns]
        row = {m: table.loc["ALL", m] for m in metric_list}
        first = metric_list[0]
        row.update({f"{first}[{d}]": table.loc[d, first] for d in table.index if d != "ALL"})
        rows[label] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "model"
    return frame


def cross_line_histories(history: np.ndarray, lines: np.ndarray, catalogue: Catalogue, share: float,
                         seed: int) -> np.ndarray:
    """A seeded ``share`` of the rows with their own line's items taken out of their history.

    history: object [N, L] of item keys, left-aligned with "" padding; lines: object [N] each
    row's line. A user the line has never seen queries it with a history from other lines only;
    these rows train exactly that query (the other rows keep the whole history, as warm users
    send it). Items not in the catalogue stay: they belong to no line. Returns a new [N, L],
    still left-aligned.
    """
    if not 0.0 <= share <= 1.0:
        raise MdrecError(f"the cross-line share must be in [0, 1], got {share}")
    out = np.array(history, dtype=object, copy=True)
    if share == 0.0 or out.size == 0:
        return out
    keys, inverse = np.unique(out.ravel(), return_inverse=True)
    index = catalogue.index_of(keys)
    line_of = {d: i for i, d in enumerate(catalogue.domains)}
    row_line = np.array([line_of.get(d, -1) for d in np.asarray(lines, dtype=object).tolist()])
    member = np.zeros((len(catalogue.domains) + 1, len(keys)), bool)  # last row: a line outside the catalogue
    member[:-1, index >= 0] = catalogue.membership[:, index[index >= 0]]
    own = member[row_line[:, None], inverse.reshape(out.shape)]
    chosen = np.random.default_rng(seed).random(len(out)) < share
    drop = own & chosen[:, None]
    out[drop] = ""
    # Left-align again: kept items first, in their order (a stable sort on "is padding").
    order = np.argsort(out == "", axis=1, kind="stable")
    return np.take_along_axis(out, order, axis=1)


def train_inputs(train_log: Log, spec: Spec, history: np.ndarray | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Raw inputs, labels (all ones) and lines of the training clicks."""
    positive, positive_history = clicks(train_log, history)
    inputs = model_inputs(positive, spec, positive_history)
    return inputs, np.ones(len(positive), np.float32), positive.frame[DOMAIN].to_numpy(dtype=object)
