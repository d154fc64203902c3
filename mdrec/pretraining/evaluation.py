"""Next-item ranking of a user encoder: the protocol SASRec, BERT4Rec and gSASRec reproductions report.

Queries (:class:`mdrec.pretraining.data.Queries`): per user a history (oldest first) and one target
item. The target is ranked against every vocabulary item with the user's history items removed
(filtered full ranking, no sampled negatives); rank 0 is the top. HR@K is the share of queries whose
target ranks below K (recall@K with one target), NDCG@K the mean of 1 / log2(rank + 2) over those.
A target outside the vocabulary counts as a miss; ties are broken by vocabulary order (the more
popular item first), so a constant scorer is the popularity ranking.

Rows of a table:
  <objective> head  the encoder's own next-item scores: the user vector (``last`` / ``mask``
                    pooling) . item embedding + item bias, i.e. what export's top-k serves
  user-vector kNN   a user's items scored by the items of the users whose encoder vectors are
                    nearest (cosine), weighted by similarity: a probe of the vector alone
  baseline: user kNN on item sets   the same kNN on raw item sets (cosine of clicked items)
  most popular      training clicks, most clicked first
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from mdrec.models.user_encoder import SPECIAL_ROWS, UserEncoder
from mdrec.models.user_vectors import encoder_vectors
from mdrec.pretraining.data import Queries, item_rows, sequence_matrix

KS = (10, 50)
EARLY_STOPPING = "ndcg@10"
MOST_POPULAR = "most popular"
KNN = "user-vector kNN"
ITEM_SET_KNN = "baseline: user kNN on item sets"


def head_name(objective: str) -> str:
    return f"{objective} head (next item)"


@dataclass
class RankingTask:
    """Queries with their targets as vocabulary indices (-1: outside the vocabulary) and the items
    removed from each query's ranking (its history)."""

    queries: Queries
    targets: np.ndarray
    excluded: list[np.ndarray]
    vocabulary_size: int

    @classmethod
    def build(cls, queries: Queries, vocabulary: Sequence[str]) -> "RankingTask":
        index = {item: i for i, item in enumerate(vocabulary)}
        targets = np.asarray([index.get(t, -1) for t in queries.targets], np.int64)
        excluded = [np.unique(np.asarray([index[i] for i in history if i in index], np.int64))
                    for history in queries.histories]
        return cls(queries, targets, excluded, len(vocabulary))

    def ranks(self, scores_of: Callable[[np.ndarray], np.ndarray], chunk: int = 512) -> np.ndarray:
        """Each query's target rank (inf for targets outside the vocabulary) under
        ``scores_of(query positions) -> [q, V]``."""
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
        return ranks

    def metrics(self, scores_of: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        return ranking_metrics(self.ranks(scores_of))


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """HR@K and NDCG@K of one target per query from the targets' 0-based ranks (inf: a miss)."""
    ranks = np.asarray(ranks, np.float64)
    out = {}
    for k in ks:
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
        out[f"hr@{k}"] = float(hit.mean()) if len(ranks) else float("nan")
        out[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else float("nan")
    return out


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


def item_matrix(sequences: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> sp.csr_matrix:
    """Users x items, 1 where the user's sequence holds the item."""
    index = {item: i for i, item in enumerate(vocabulary)}
    rows, cols = [], []
    for row, items in enumerate(sequences):
        columns = {index[i] for i in items if i in index}
        rows += [row] * len(columns)
        cols += sorted(columns)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sequences), len(vocabulary)))


class Evaluator:
    """One query set (validation or test) of an encoder: its head, the kNN probe, the item-set kNN
    and popularity (see the module doc). ``sequences``: every user's items known at query time
    (oldest first; the kNN neighbours and the queries' histories come from them)."""

    def __init__(self, encoder: UserEncoder, vocabulary: Sequence[str], sequences: dict[str, list[str]],
                 queries: Queries, *, times: dict[str, list[int]] | None = None, popularity: np.ndarray,
                 neighbours: int = 50):
        self.encoder, self.vocabulary, self.neighbours = encoder, list(vocabulary), int(neighbours)
        self.task = RankingTask.build(queries, self.vocabulary)
        self.popularity_scores = np.asarray(popularity, np.float64)
        self.users = list(sequences)
        self.user_row = {u: i for i, u in enumerate(self.users)}
        index = {item: SPECIAL_ROWS + i for i, item in enumerate(self.vocabulary)}
        length = encoder.max_length
        self.user_ids = item_rows([sequences[u] for u in self.users], index, length)
        self.user_times = (sequence_matrix([times[u] for u in self.users], length, fill=0)
                           if times is not None and encoder.time_buckets else None)
        self.query_ids = item_rows(queries.histories, index, length)
        self.query_times = (sequence_matrix(queries.history_times, length, fill=0)
                            if queries.history_times is not None and encoder.time_buckets else None)
        self.matrix = item_matrix([sequences[u] for u in self.users], self.vocabulary)
        self.query_rows = np.asarray([self.user_row[u] for u in queries.users], np.int64)

    def __len__(self) -> int:
        return len(self.task.targets)

    def head(self) -> dict[str, float]:
        vectors = encoder_vectors(self.encoder, self.query_ids, self.query_times)
        table = self.encoder.item_output_table().numpy()
        bias = self.encoder.item_bias.numpy()
        return self.task.metrics(lambda rows: vectors[rows] @ table.T + bias)

    def knn(self) -> dict[str, float]:
        vectors = encoder_vectors(self.encoder, self.user_ids, self.user_times)
        return self.task.metrics(knn_scorer(cosine_rows(vectors), self.query_rows, self.matrix, self.neighbours))

    def item_set_knn(self) -> dict[str, float]:
        return self.task.metrics(knn_scorer(cosine_item_sets(self.matrix), self.query_rows, self.matrix,
                                            self.neighbours))

    def most_popular(self) -> dict[str, float]:
        scores = self.popularity_scores
        return self.task.metrics(lambda rows: np.broadcast_to(scores, (len(rows), len(scores))))

    def table(self, objective: str, with_head: bool) -> list[dict]:
        """The rows of the module doc, each {"model": name, "hr@10": ..., "ndcg@10": ..., ...}."""
        if not len(self):
            return []
        rows = [{"model": head_name(objective), **self.head()}] if with_head else []
        rows.append({"model": KNN, **self.knn()})
        rows.append({"model": ITEM_SET_KNN, **self.item_set_knn()})
        rows.append({"model": MOST_POPULAR, **self.most_popular()})
        return rows

