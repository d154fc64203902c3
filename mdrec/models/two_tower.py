"""Cross-domain two-tower retrieval (tensorflow-recommenders' in-batch softmax).

Query tower: the user id (one table for every business line), user and context features, the
line's embedding and the user's recent history (mean of item embeddings from the same item table
the candidate tower reads). Candidate tower: the item through an item encoder (``item_encoder``:
``id``, ``content`` or ``hybrid``; by default the item id and the item features; in ``content``
mode no item id is read, the history is embedded by content and the per-item offsets below are
predicted from the content). Both end in an
L2-normalised vector of ``embedding_dim``.

``towers="shared"`` drops both MLPs: the query is the normalised mean of the history's item
embeddings and the candidate the normalised embedding of the item, rows of one table (FISM's form,
Kabbur et al. 2013). The score is then an item-item similarity summed over the user's clicks, what
ItemKNN and EASE compute, learned in the table's width (the item id's ``embedding_dim``), and still
one dot product for the index. It reads no user id or feature, so it cannot memorise users.

``towers="sequence"`` makes the query a causal transformer over the history (SASRec's blocks,
:class:`mdrec.models.user_encoder.UserEncoder`, its state at the newest item) and the candidate a
row of that encoder's item table: SASRec trained as a two-tower, one (history, clicked item) pair
per row, where the mean of ``shared`` forgets the order the clicks came in. Width
``embedding_dim``, ``sequence_layers`` blocks of ``sequence_heads`` heads; no user id either.

The score is the dot product / temperature, plus a
learned offset per item and line (``item_bias``: how much more often the item is clicked in that
line than its similarity says, the popularity a normalised vector cannot hold). It is carried as
extra dimensions (the query's one-hot line against the item's per-line offsets), so exact and
approximate dot-product search rank by the full score. With ``towers`` shared or sequence the query
reads only the history, so a user without one is scored by the line's training popularity alone
(``no_history="popularity"``, the default: the line one-hot against a fixed log-frequency prior in
one more block of dimensions); ``no_history="learned"`` keeps the trained offsets (and, for
sequence, a learned query) for them, which drift from popularity and ranked below it on
MovieLens-1M's validation users without history.

The loss is ``tfrs.tasks.Retrieval``: in-batch softmax with the logQ correction (each candidate's
logit minus log of its sampling probability, from training frequencies or the streaming estimator
of Yi et al. 2019), accidental hits removed by candidate id, and optional hard-negative mining.
With ``negatives="domain"`` a query is contrasted only with in-batch items of its own line's
catalogue, as it is served. ``uniform_negatives=M`` adds M catalogue items drawn uniformly each
step to every query's negatives (mixed negative sampling, Yang et al., WWW 2020): in-batch
negatives are clicked items, so popular ones, and a tail item is rarely contrasted with anything.
The logQ correction then uses each candidate's expected share of the mixed set, p + M / (B N)
for training frequency p, batch B and catalogue size N.
"""
from __future__ import annotations

from typing import Any, Sequence, cast

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from mdrec.data.catalogue import Catalogue, item_features
from mdrec.data.signature import input_signature
from mdrec.data.transform import Transform
from mdrec.layers.features import FeatureEncoder
from mdrec.layers.item_encoders import ContentOffsets, ItemEncoder
from mdrec.layers.mlp import MLP
from mdrec.layers.sampling import StreamingFrequencyEstimator
from mdrec.models.user_encoder import UserEncoder
from mdrec.spec import FeatureSpec, SequenceSpec, Spec

LOGQ = ("frequency", "streaming", "none")
NEGATIVES = ("all", "domain")
TOWERS = ("mlp", "shared", "sequence")
NO_HISTORY = ("popularity", "learned")  # how a history-only query tower scores a user without one


def query_features(spec: Spec) -> list[FeatureSpec]:
    return [spec.user_id] + spec.by_role("user", "context")


def query_signature(spec: Spec) -> dict[str, tf.TensorSpec]:
    """Raw inputs of the query tower: user and context features, the line, the history."""
    names = {f.name for f in query_features(spec)} | {spec.domain.column, spec.sequence.name if spec.sequence else None}
    return {k: v for k, v in input_signature(spec).items() if k in names}


def candidate_signature(spec: Spec) -> dict[str, tf.TensorSpec]:
    """Raw inputs of the candidate tower: item features (and the line, which keys scoped ids)."""
    names = {f.name for f in item_features(spec)} | {spec.domain.column}
    return {k: v for k, v in input_signature(spec).items() if k in names}


def _check_arguments(spec: Spec, *, towers: str, logq: str, negatives: str, temperature: float,
                     hard_negatives: int, uniform_negatives: int = 0, user_feature: bool = False) -> None:
    """Raise ValueError on the first of TwoTower's arguments that does not fit (the item encoder's
    mode is checked once the encoder has resolved it)."""
    if towers not in TOWERS:
        raise ValueError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")
    if user_feature and towers != "mlp":
        raise ValueError(f"towers={towers} reads no user input, so the user feature (a pretrained user encoder) "
                         "would be ignored; use towers=mlp to transfer it")
    if towers in ("shared", "sequence") and spec.sequence is None:
        raise ValueError(f"towers={towers} scores an item against the user's history, and spec '{spec.name}' "
                         "has no sequence; add one (e.g. sequence: {item: item_id, max_length: 50}) or use "
                         "towers=mlp")
    if logq not in LOGQ:
        raise ValueError(f"logq must be one of {', '.join(LOGQ)}, got {logq!r}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if hard_negatives < 0:
        raise ValueError(f"hard_negatives must be >= 0 (0 keeps every negative), got {hard_negatives}")
    if uniform_negatives < 0:
        raise ValueError(f"uniform_negatives must be >= 0 (0: in-batch negatives only), got {uniform_negatives}")


def _log_frequency_prior(positives: np.ndarray, slots: np.ndarray, vocabulary_size: int,
                         temperature: float) -> np.ndarray:
    """The starting per-line offsets [lines, V]: each item's smoothed log click frequency in each line,
    centred per line and scaled by the temperature the task divides by, so training starts from
    per-line popularity and the towers learn what differs from it.

    positives: clicks [lines, items] of the catalogue items; slots: their table rows int [items].
    """
    clicks = np.zeros((len(positives), vocabulary_size))
    clicks[:, slots] = positives
    frequency = (clicks + 0.5) / (clicks + 0.5).sum(1, keepdims=True)
    prior: np.ndarray = temperature * (np.log(frequency) - np.log(frequency).mean(1, keepdims=True))
    return prior


class TwoTower(tf_keras.Model):
    """call(query inputs) -> query embeddings float32 [B, self.embedding_dim].

    Each tower gives an L2-normalised vector of ``embedding_dim``; with ``item_bias`` the query
    then carries its line one-hot and the candidate its per-line offsets (``self.embedding_dim`` =
    embedding_dim + number of lines), and with the popularity fallback one more block of the line's
    width: [tower, line, 0] for a query with a history, [0, 0, line] without, against the
    candidate's [tower, offsets, fixed prior]. ``hidden`` gives the widths of both towers' MLPs.
    """

    def __init__(self, spec: Spec, transform: Transform, catalogue: Catalogue, *, embedding_dim: int = 32,
                 hidden: Sequence[int] = (128,),
                 dropout: float = 0.0, temperature: float = 0.05, logq: str = "frequency",
                 frequency_alpha: float = 0.01, remove_accidental_hits: bool = True,
                 hard_negatives: int = 0, negatives: str = "all", uniform_negatives: int = 0,
                 item_bias: bool = True, user_id_embedding: bool = True,
                 embeddings_l2: float = 0.0, user_feature: tf_keras.layers.Layer | None = None,
                 item_encoder: str = "auto", text_encoder: str = "mean",
                 frozen_text: str = "none", hybrid_combine: str = "concat", towers: str = "mlp",
                 sequence_layers: int = 2, sequence_heads: int = 2, no_history: str = "popularity",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_arguments(spec, towers=towers, logq=logq, negatives=negatives, temperature=temperature,
                         hard_negatives=hard_negatives, uniform_negatives=int(uniform_negatives),
                         user_feature=user_feature is not None)
        if no_history not in NO_HISTORY:
            raise ValueError(f"no_history must be one of {', '.join(NO_HISTORY)}, got {no_history!r}")
        self.spec = spec
        self.catalogue = catalogue  # the items it retrieves from (kept for evaluation and export)
        lines = len(catalogue.domains)
        # Without the user id the query is the user's features and history only: less to overfit
        # when users have a handful of clicks (the id input is still accepted and ignored).
        self.query_inputs = query_features(spec) if user_id_embedding else query_features(spec)[1:]
        self.embedding_dim = int(embedding_dim) + (lines if item_bias else 0)  # width of both towers' output
        self.logq = logq
        self.negatives = negatives
        self.uniform_negatives = int(uniform_negatives)
        # The catalogue's candidate inputs the uniform negatives are drawn from, and the generator
        # drawing them (made in build_variables, after the run has seeded TensorFlow; it resumes
        # with the checkpoint).
        self.catalogue_inputs = ({k: tf.constant(v) for k, v in catalogue.inputs(spec).items()}
                                 if self.uniform_negatives else {})
        self.sampler: tf.random.Generator | None = None
        # Checkpoints and SavedModels address variables by attribute name: the steps below assign
        # the sublayers in a fixed order under fixed names; keep both when changing them.
        self._build_encoders(transform, towers, item_encoder, embeddings_l2=embeddings_l2, user_feature=user_feature,
                             text_encoder=text_encoder, frozen_text=frozen_text, hybrid_combine=hybrid_combine,
                             dropout=dropout)
        self._build_towers(towers, hidden, embedding_dim, dropout, item_bias=item_bias,
                           sequence_layers=sequence_layers, sequence_heads=sequence_heads)
        # A query tower that reads only the history knows nothing of a user without one: that
        # query is scored by the line's training popularity alone (one more block of dimensions,
        # the line one-hot against a fixed log-frequency prior, so the index still ranks by one
        # dot product). The trained offsets drift from popularity, and rank below it for them.
        self.popularity_fallback = towers in ("shared", "sequence") and item_bias and no_history == "popularity"
        self.embedding_dim += lines if self.popularity_fallback else 0
        self.task = tfrs.tasks.Retrieval(
            loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True),
            temperature=temperature, num_hard_negatives=hard_negatives or None,
            remove_accidental_hits=remove_accidental_hits)
        vocabulary_size, slots = self._build_item_statistics()
        prior = _log_frequency_prior(catalogue.positives, slots, vocabulary_size, temperature).T  # [V, lines]
        self.item_bias = self._item_bias_layer(item_bias, prior)
        # The offsets start at the prior and train; the fallback's copy of it does not.
        self.popularity_prior = tf.constant(prior.astype(np.float32)) if self.popularity_fallback else None
        self.frequency = StreamingFrequencyEstimator(vocabulary_size, frequency_alpha, name="frequency") \
            if logq == "streaming" else None

    def _build_encoders(self, transform: Transform, towers: str, item_encoder: str, *, embeddings_l2: float,
                        user_feature: tf_keras.layers.Layer | None, text_encoder: str, frozen_text: str,
                        hybrid_combine: str, dropout: float) -> None:
        """The feature encoder (raw inputs -> one embedding per feature, the line and the history)
        and the item encoder the candidate tower reads the item through."""
        # ``user_feature``: e.g. a pretrained user encoder joins the query tower (mdrec.transfer).
        self.encoder = FeatureEncoder(self.spec, transform, embeddings_l2=embeddings_l2, name="features",
                                      user_feature=user_feature)
        # The candidate tower reads the item through an item encoder: its ID, its content or both
        # (mdrec.layers.item_encoders); in content mode the history is embedded by content too.
        if towers in ("shared", "sequence") and item_encoder == "auto":  # both sides are item-table rows
            item_encoder = "id"
        self.item_encoder = ItemEncoder(self.spec, self.encoder, mode=item_encoder, text_encoder=text_encoder,
                                        frozen_text=frozen_text, hybrid_combine=hybrid_combine,
                                        catalogue=self.catalogue, dropout=dropout, name="item_encoder")
        if self.item_encoder.history_lookup is not None:
            self.encoder.history_items = self.item_encoder.history_items
        if towers in ("shared", "sequence") and self.item_encoder.mode != "id":
            raise ValueError(f"towers={towers} reads the item id table, and item_encoder={self.item_encoder.mode}; "
                             f"use item_encoder=id with towers={towers}")

    def _build_towers(self, towers: str, hidden: Sequence[int], embedding_dim: int, dropout: float, *,
                      item_bias: bool, sequence_layers: int, sequence_heads: int) -> None:
        """The query and candidate MLP towers [B, d_in] -> [B, embedding_dim]; none with
        ``towers="shared"``, where the output width becomes the item id table's; with
        ``towers="sequence"`` the history encoder [B, L] -> [B, embedding_dim] and its item table."""
        self.towers = towers
        self.query_tower: _Tower | None
        self.candidate_tower: _Tower | None
        self.sequence_encoder: UserEncoder | None = None
        if towers == "sequence":
            sequence = cast(SequenceSpec, self.spec.sequence)  # checked by the constructor
            self.sequence_encoder = UserEncoder(
                [str(k) for k in self.catalogue.keys], architecture="transformer", dim=embedding_dim,
                layers=sequence_layers, heads=sequence_heads, max_length=sequence.max_length, causal=True,
                block="sasrec", pooling="last", dropout=dropout, name="sequence_encoder")
            # A user with no earlier click gets this learned query: the encoder's state over an
            # all-padding row is a zero vector whose norms send gradients of 1e20 back.
            self.no_history_query = self.add_weight("no_history_query", shape=[embedding_dim],
                                                    initializer=tf_keras.initializers.RandomNormal(stddev=0.05))
            self.query_tower = self.candidate_tower = None
        elif towers == "shared":  # both sides are rows of the item table: its width is the embedding
            self.embedding_dim = int(self.spec.item_id.embedding_dim) + (len(self.catalogue.domains) if item_bias else 0)
            self.query_tower = self.candidate_tower = None
        else:
            self.query_tower = _Tower(hidden, embedding_dim, dropout, name="query_tower")
            self.candidate_tower = _Tower(hidden, embedding_dim, dropout, name="candidate_tower")

    def _build_item_statistics(self) -> tuple[int, np.ndarray]:
        """Per item-table row: the training frequency (logQ) ``item_probability`` [V] and the catalogue
        membership per line ``item_membership`` bool [lines, V].

        Returns (V, the table row of each catalogue item int [items]).
        """
        item_lookup = self.encoder.lookups[self.spec.item_id.table]
        vocabulary_size = int(item_lookup.vocabulary_size())
        slots = item_lookup(tf.constant(self.catalogue.keys.astype(str))).numpy()
        # Rows of no catalogue item (padding, OOV) get the rarest item's probability.
        probability = np.full(vocabulary_size, self.catalogue.sampling_probability().min(), np.float32)
        probability[slots] = self.catalogue.sampling_probability()
        membership = np.zeros((len(self.catalogue.domains), vocabulary_size), bool)
        membership[:, slots] = self.catalogue.membership
        self.item_probability = tf.constant(probability)
        self.item_membership = tf.constant(membership)
        return vocabulary_size, slots

    def _item_bias_layer(self, item_bias: bool, prior: np.ndarray) -> tf_keras.layers.Layer | None:
        """The per item and line offsets (None without ``item_bias``): an embedding [V, lines] started
        at the log-frequency ``prior`` [V, lines], or, in content mode, predicted from the item's content."""
        if not item_bias:
            return None
        lines = len(self.catalogue.domains)
        # A content-mode model reads no ID, so its offsets are predicted from the content instead.
        if self.item_encoder.mode == "content":
            return ContentOffsets(lines, name="content_bias")
        return tf_keras.layers.Embedding(prior.shape[0], lines,
                                         embeddings_initializer=tf_keras.initializers.Constant(prior),
                                         name="item_bias")

    # ---- towers -------------------------------------------------------------------------------------
    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.query_embedding(inputs, training=training)

    def query_embedding(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.sequence_encoder is not None:
            rows = self.sequence_encoder.item_ids(inputs[cast(SequenceSpec, self.spec.sequence).name])
            state = self.sequence_encoder.vectors_of_ids(rows, training=training)
            # tf.where passes a zero gradient to the empty rows' state, so they send nothing back.
            has_history = tf.reduce_any(tf.not_equal(rows, 0), axis=1, keepdims=True)
            query = tf.math.l2_normalize(tf.where(has_history, state, self.no_history_query[None, :]), axis=-1)
        elif self.towers == "shared":
            history = self.encoder.encode(inputs, [], history=True, domain=False, training=training)
            # towers=shared needs a sequence (checked by the constructor)
            name = cast(SequenceSpec, self.spec.sequence).name
            has_history = tf.reduce_any(tf.not_equal(inputs[name], ""), axis=1, keepdims=True)
            query = tf.math.l2_normalize(history[name], axis=-1)
        else:
            embedded = self.encoder.encode(inputs, self.query_inputs, history=True, domain=True, training=training)
            joined = tf.concat([embedded[k] for k in sorted(embedded)], -1)
            query = cast(_Tower, self.query_tower)(joined, training=training)  # built unless towers=shared
        if self.item_bias is not None:
            line = tf.one_hot(self.encoder.domain_index(inputs), self.item_bias.output_dim, dtype=query.dtype)
            if self.popularity_fallback:  # [tower, line, 0], or [0, 0, line] without a history
                known = tf.cast(has_history, query.dtype)
                return tf.concat([query * known, line * known, line * (1.0 - known)], -1)
            query = tf.concat([query, line], -1)
        return query

    def candidate_embedding(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.sequence_encoder is not None:  # its own item table (item_bias is never content here)
            rows = self.sequence_encoder.item_ids(self._item_keys(inputs))
            candidate = tf.math.l2_normalize(self.sequence_encoder.item_embedding(rows), axis=-1)
            features = None
        else:
            embedded = self.item_encoder(inputs, training=training)
            features = tf.concat([embedded[k] for k in sorted(embedded)], -1)
            candidate = (tf.math.l2_normalize(embedded[self.spec.item_id.name], axis=-1) if self.towers == "shared"
                         else cast(_Tower, self.candidate_tower)(features, training=training))  # built unless shared
        if self.item_bias is not None:
            offsets = self.item_bias(features) if isinstance(self.item_bias, ContentOffsets) \
                else self.item_bias(self.item_slot(inputs))
            candidate = tf.concat([candidate, offsets], -1)
        if self.popularity_prior is not None:
            candidate = tf.concat([candidate, tf.gather(self.popularity_prior, self.item_slot(inputs))], -1)
        return candidate

    def item_slot(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Index of each row's item in the item table, int64 [B] (the id accidental hits compare)."""
        return self.encoder.lookups[self.spec.item_id.table](self._item_keys(inputs))

    def _item_keys(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """Each row's item as its table key, tf.string [B] ("line/item" for a line-scoped id)."""
        item = self.spec.item_id
        return self.encoder._keys(item, inputs[item.name], inputs)

    def build_variables(self, inputs: dict[str, tf.Tensor]) -> None:
        """Create every variable (both towers, the estimator) so a checkpoint restores in full."""
        self.query_embedding(inputs)
        self.candidate_embedding(inputs)
        if self.frequency is not None:
            self.frequency(self.item_slot(inputs))
        if self.uniform_negatives and self.sampler is None:
            self.sampler = tf.random.Generator.from_seed(int(tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)))

    # ---- training -----------------------------------------------------------------------------------
    def training_loss(self, inputs: dict[str, tf.Tensor], labels: tf.Tensor, training: bool = True) -> tf.Tensor:
        """Mean in-batch softmax loss over the batch's (query, clicked item) pairs. ``training=False``:
        the same loss without dropout and without updating the streaming frequency estimator (the
        validation loss)."""
        query = self.query_embedding(inputs, training=training)
        candidate = self.candidate_embedding(inputs, training=training)
        slot = self.item_slot(inputs)
        probability = None
        if self.logq == "frequency":
            probability = tf.gather(self.item_probability, slot)
        elif self.logq == "streaming":
            # the estimator exists exactly when logq=streaming
            probability = cast(StreamingFrequencyEstimator, self.frequency)(slot, training=training)
        if self.uniform_negatives and training:  # the validation loss stays in-batch: no sampling noise
            candidate, slot, probability = self._with_uniform_negatives(candidate, slot, probability, training)
        mask = None
        if self.negatives == "domain":
            domain = self.encoder.domain_index(inputs)
            in_line = tf.gather(tf.gather(self.item_membership, domain), slot, axis=1)   # [B, B (+ M)]
            mask = tf.logical_or(in_line, tf.eye(tf.shape(query)[0], tf.shape(slot)[0], dtype=tf.bool))
        return self.task(query, candidate, candidate_sampling_probability=probability, candidate_ids=slot,
                         compute_metrics=False, compute_batch_metrics=False, score_mask=mask)

    def _with_uniform_negatives(self, candidate: tf.Tensor, slot: tf.Tensor, probability: tf.Tensor | None,
                                training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """The batch's candidates [B, d] followed by ``uniform_negatives`` catalogue items [M, d], their
        table rows [B + M] and logQ probabilities [B + M]: each candidate's expected share of the
        mixed set, p + M / (B N) (``probability`` p of the in-batch rows; the sampled rows' own)."""
        sampler = cast(tf.random.Generator, self.sampler)  # made by build_variables
        size = len(self.catalogue)
        rows = sampler.uniform([self.uniform_negatives], maxval=size, dtype=tf.int64)
        sampled = {name: tf.gather(values, rows) for name, values in self.catalogue_inputs.items()}
        sampled_slot = self.item_slot(sampled)
        slots = tf.concat([slot, sampled_slot], 0)
        candidates = tf.concat([candidate, self.candidate_embedding(sampled, training=training)], 0)
        if probability is None:
            return candidates, slots, None
        # streaming: the sampled rows are not batch occurrences, so they read the estimate only
        sampled_probability = (tf.gather(self.item_probability, sampled_slot) if self.logq == "frequency"
                               else cast(StreamingFrequencyEstimator, self.frequency)(sampled_slot, training=False))
        batch = tf.cast(tf.size(slot), probability.dtype)
        mixed = tf.concat([probability, sampled_probability], 0)
        return candidates, slots, mixed + self.uniform_negatives / (batch * size)


class _Tower(tf_keras.layers.Layer):
    """MLP -> linear projection -> L2 normalisation. [B, d_in] -> [B, embedding_dim]."""

    def __init__(self, hidden: Sequence[int], embedding_dim: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlp = MLP(hidden, dropout=dropout, name="mlp")
        self.out = tf_keras.layers.Dense(embedding_dim, name="projection")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.math.l2_normalize(self.out(self.mlp(x, training=training)), axis=-1)
