"""``mdrec lifelong``'s per-task evaluation: one model's scores on one task's held-out users, the
task's metrics, and the sanity row beside them.

Metrics per kind (K = 10):
  next_item   recall@K (= hit rate: one target) and NDCG@K of the held-out last item, the user's
              history removed from the ranking; sanity: popularity
  line_items  recall@K and NDCG@K of the held-out users' clicked items of the line; sanity: popularity
  profile     accuracy and macro-F1 over the classes; sanity: the majority class
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.lifelong.model import TaskModel
from mdrec.lifelong.task_data import TaskData

K = 10


def task_scores(model: TaskModel, task: int, items: np.ndarray, masks=None, batch_size: int = 512) -> np.ndarray:
    """Task ``task``'s head over items strings [N, max_length] -> float32 [N, outputs], in batches."""
    fn = tf.function(lambda x: model.scores(x, task, masks), autograph=False,
                     input_signature=[tf.TensorSpec([None, items.shape[1]], tf.string)])
    out = [fn(tf.constant(items[s:s + batch_size])).numpy() for s in range(0, len(items), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.head(task).outputs), np.float32)


def ranking_metrics(scores: np.ndarray, targets: list, excluded: list | None = None) -> dict[str, float]:
    """recall@K (fraction of a user's targets in the top K) and NDCG@K, averaged over users.

    scores: [N, items]; targets: per user one index or an array of them; excluded: per user the
    indices never ranked (set to -inf on a copy)."""
    recall, ndcg = [], []
    scores = np.array(scores, dtype=np.float64, copy=True)
    for row, target in enumerate(targets):
        if excluded:
            scores[row, excluded[row]] = -np.inf
        top = np.argsort(-scores[row], kind="stable")[:K]
        target = np.atleast_1d(np.asarray(target))
        hits = np.isin(top, target)
        recall.append(hits.sum() / len(target))
        ideal = np.sum(1.0 / np.log2(np.arange(2, min(len(target), K) + 2)))
        ndcg.append(np.sum(hits / np.log2(np.arange(2, K + 2))) / ideal)
    return {f"recall@{K}": float(np.mean(recall)) if recall else float("nan"),
            f"ndcg@{K}": float(np.mean(ndcg)) if ndcg else float("nan")}


def evaluate(model: TaskModel, data: TaskData, masks=None) -> dict[str, float]:
    """The task's metrics for ``model`` (its kernels multiplied by ``masks``, if given)."""
    scores = task_scores(model, data.task.index, data.eval_x, masks)
    return metrics_of(scores, data)


def metrics_of(scores: np.ndarray, data: TaskData) -> dict[str, float]:
    """The task's metrics of scores [N eval users, outputs]."""
    if data.task.kind == "next_item":
        return ranking_metrics(scores, data.eval_targets, data.excluded)
    if data.task.kind == "line_items":
        return ranking_metrics(scores, data.eval_targets)
    predicted = scores.argmax(1)
    labels = np.asarray(data.eval_targets)
    return {"accuracy": float(np.mean(predicted == labels)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", labels=np.arange(data.outputs),
                                       zero_division=0))}


def sanity(data: TaskData) -> tuple[str, dict[str, float]]:
    """(row name, metrics) of the baseline that needs no model: the majority class for a profile,
    the training users' item popularity otherwise (the same scores for every user)."""
    n = len(data.eval_x)
    if data.task.kind == "profile":
        scores = np.zeros((n, data.outputs))
        scores[:, data.majority] = 1.0
        return "majority class", metrics_of(scores, data)
    scores = np.tile(data.popularity.astype(np.float64), (n, 1))
    return "popularity", metrics_of(scores, data)
