"""Multi-domain CTR models, all built from one feature spec and one embedding layer.

Each takes the raw inputs of ``data.signature.input_signature`` and returns a logit [B]:

- ``SharedBottom`` (STAR's "Base"): one MLP for every domain; the domain is one more feature.
- ``Star``: partitioned normalization, star-topology FCN (W ⊙ W_p per domain) and the auxiliary
  domain network (Sheng et al., CIKM 2021).
- ``Separate``: one model per domain (its own embeddings and MLP), trained side by side.
- ``MMoE``: shared experts mixed by one softmax gate per domain, one tower per domain.

All but ``Separate`` share the embedding tables across domains (one user_id table for every line).
By default the MLPs also see DLRM-style pairwise dot products of the feature embeddings, and every
logit carries first-order terms (user, item, line and user x line biases: the first-order logistic
sanity row inside the model, mdrec.layers.first_order). When the spec cuts the click from a graded
column (a 1-5 rating), every model also trains on the grade: one logit per grade threshold from
its click logit (mdrec.layers.grades); it still predicts the click.

Dropout is off by default: 0.1 after each hidden layer did not raise test AUC on Douban, MovieLens-1M
or the synthetic log (3 seeds each, with the embeddings' L2 and early stopping on) and cost a fifth
of a training step on 2 cores (README, "Training throughput").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.transform import Transform
from mdrec.layers.calibration import LineCalibration
from mdrec.layers.domain import PartitionedNormalization, domain_tower, route_by_domain
from mdrec.layers.features import DOMAIN_KEY, FeatureEncoder
from mdrec.layers.first_order import FirstOrderTerms
from mdrec.layers.grades import GradeThresholds
from mdrec.layers.interaction import ProjectedDotInteraction
from mdrec.layers.item_encoders import ItemEncoder
from mdrec.layers.mlp import MLP
from mdrec.layers.star import StarTower
from mdrec.spec import Spec

if TYPE_CHECKING:
    from mdrec.data.catalogue import Catalogue

# "platt_users": a Platt pair per line and user group (with / without a training row); "platt": one
# per line (the default before 2026-12-07, which runs saved then still read); "none".
CALIBRATIONS = ("platt_users", "platt", "none")


class ClickModel(tf_keras.Model):
    """A model whose call gives click logits [B]; trained on binary cross-entropy.

    ``calibration`` (a LineCalibration, or None): the per-line (and per user group) Platt step the
    training workflow fits on the validation split after training; the identity until then.
    ``grades`` (a GradeThresholds, or None): when set, the model trains on grade levels, not clicks.
    """

    autograph = False  # calls branch on Python values only (mdrec.training.inference.uses_autograph)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calibration: LineCalibration | None = None
        self.grades: GradeThresholds | None = None

    def calibration_layer(self, calibration: str, num_lines: int, spec: Spec) -> LineCalibration | None:
        """The calibration layer of mode ``calibration``; hashed user ids have no "new user" row,
        so their calibration is per line only."""
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
        if calibration == "none":
            return None
        by_user = calibration == "platt_users" and not spec.user_id.hash_buckets
        return LineCalibration(num_lines, user_groups=2 if by_user else 1, name="calibration")

    def user_groups(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """int32 [B]: 1 where the row's user has no row of its own in the user id table (not in
        training, or an empty id), else 0."""
        raise NotImplementedError

    def calibrated(self, inputs: dict[str, tf.Tensor], logit: tf.Tensor, domain: tf.Tensor) -> tf.Tensor:
        """``logit`` [B] through the calibration (if on), by line and, if it has them, user group."""
        if self.calibration is None:
            return logit
        groups = self.user_groups(inputs) if self.calibration.user_groups > 1 else None
        return self.calibration(logit, domain, groups)

    def grades_layer(self, grades: bool, weight: float, transform: Transform) -> GradeThresholds | None:
        """The threshold logits of the transform's grade levels, if ``grades`` and the label has them."""
        levels = transform.grade_levels
        if not grades or levels is None:
            return None
        return GradeThresholds(levels.click_level, levels.shares, weight=weight, name="grades")

    def training_loss(self, inputs: dict[str, tf.Tensor], labels: tf.Tensor) -> tf.Tensor:
        """Binary cross-entropy per example float32 [B]. ``labels`` float32 [B]: the clicks, or,
        when the model trains on grades (``self.grades``), the rows' grade levels 0..K
        (mdrec.data.grades.GradeLevels.levels), whose thresholds' losses are summed."""
        logit = self(inputs, training=True)
        if self.grades is None:
            return tf_keras.losses.binary_crossentropy(labels, logit, from_logits=True)
        return self.grades.cross_entropy(labels, self.grades(logit))


class CTRModel(ClickModel):
    """Shared plumbing: the feature encoder and the optional dot interaction."""

    def __init__(self, spec: Spec, transform: Transform, *, embeddings_l2: float = 1e-3,
                 interaction: str = "dot", interaction_dim: int = 16,
                 user_feature: tf_keras.layers.Layer | None = None, item_encoder: str = "auto",
                 text_encoder: str = "mean", frozen_text: str = "none", hybrid_combine: str = "concat",
                 catalogue: Catalogue | None = None, first_order: bool = True, first_order_prior: float = 5.0,
                 calibration: str = "platt_users", grades: bool = True, grade_weight: float = 0.5,
                 **kwargs: Any) -> None:
        """``first_order``: add the user, item, line and user x line biases to the logit, each
        shrunk toward 0 by ``first_order_prior`` pseudo-impressions (mdrec.layers.first_order).
        ``calibration``: "platt_users" (a scale and shift of the logit per line and user group,
        users with and without a training row, fitted on validation after training), "platt" (per
        line only) or "none".
        ``grades``: when the spec cuts the click from a graded column, also train on every grade
        threshold, the others weighted ``grade_weight`` (mdrec.layers.grades).
        ``user_feature``: a layer user ids [B] -> [B, w] read as one more user feature, e.g. a
        pretrained user encoder over each user's source-line behaviour (mdrec.transfer.PretrainedUser).
        ``item_encoder``: how the item is read, id / content / hybrid (mdrec.layers.item_encoders;
        ``catalogue``, the training items, backs the content history and the frozen text)."""
        super().__init__(**kwargs)
        if interaction not in ("dot", "none"):
            raise ValueError(f"interaction must be 'dot' or 'none', got {interaction!r}")
        self.spec = spec
        self.encoder = FeatureEncoder(spec, transform, embeddings_l2=embeddings_l2, name="features",
                                      user_feature=user_feature)
        self.item_encoder = ItemEncoder(spec, self.encoder, mode=item_encoder, text_encoder=text_encoder,
                                        frozen_text=frozen_text, hybrid_combine=hybrid_combine,
                                        catalogue=catalogue, name="item_encoder")
        if self.item_encoder.history_lookup is not None:
            self.encoder.history_items = self.item_encoder.history_items
        self.interaction = ProjectedDotInteraction(interaction_dim, name="interaction") \
            if interaction == "dot" else None
        self.first_order: FirstOrderTerms | None = None
        if first_order:
            user, item = spec.user_id, spec.item_id
            self.first_order = FirstOrderTerms(
                self.encoder.lookups[user.table].vocabulary_size(), self.encoder.lookups[item.table].vocabulary_size(),
                self.encoder.num_domains, prior=first_order_prior, rows=transform.rows,
                item_bias=item in self.item_encoder.reads, name="first_order")
        self.calibration = self.calibration_layer(calibration, self.encoder.num_domains, spec)
        self.grades = self.grades_layer(grades, grade_weight, transform)

    @property
    def num_domains(self) -> int:
        return self.encoder.num_domains

    def features(self, inputs: dict[str, tf.Tensor], *,
                 with_domain: bool = True) -> tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]:
        """(concatenated features [B, D], embedded features by name, domain index [B])."""
        embedded = self.encoder.encode(inputs, self.item_encoder.other_features())  # user, context, history
        embedded.update(self.item_encoder(inputs))                                 # the item's fields
        names = [n for n in sorted(embedded) if with_domain or n != DOMAIN_KEY]
        vectors = [embedded[n] for n in names]
        x = tf.concat(vectors, axis=-1)
        if self.interaction is not None:
            x = tf.concat([x, self.interaction(vectors)], axis=-1)
        return x, embedded, self.encoder.domain_index(inputs)

    def output_logit(self, inputs: dict[str, tf.Tensor], logit: tf.Tensor) -> tf.Tensor:
        """The network's ``logit`` [B] plus the first-order terms of the batch's users, items and
        lines (if on), through the calibration (if on)."""
        domain = self.encoder.domain_index(inputs)
        if self.first_order is not None:
            spec = self.spec
            logit += self.first_order(self.encoder.ids(spec.user_id, inputs), self.encoder.ids(spec.item_id, inputs),
                                      domain)
        return self.calibrated(inputs, logit, domain)

    def user_groups(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        user = self.spec.user_id
        # StringLookup rows: 0 the mask (""), then the OOV buckets, then the vocabulary.
        return tf.cast(self.encoder.ids(user, inputs) <= user.oov_buckets, tf.int32)

    def prepare_inference(self) -> None:
        """Refresh anything precomputed for serving (STAR's fused weights); no-op by default."""


class SharedBottom(CTRModel):
    def __init__(self, spec: Spec, transform: Transform, hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(spec, transform, **kwargs)
        self.mlp = MLP(hidden, dropout=dropout, name="bottom")
        self.head = tf_keras.layers.Dense(1, name="logit")

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        x, _, _ = self.features(inputs)
        return self.output_logit(inputs, tf.squeeze(self.head(self.mlp(x, training=training)), -1))


class Star(CTRModel):
    """logit = s_m (PN + star FCN over the features) + s_a (auxiliary net over domain ⊕ features).

    ``normalization`` places partitioned normalization: "hidden" after each hidden star layer's
    linear part, before the ReLU; "input" on the concatenated embeddings before the FCN, as drawn
    in the paper; "none" (the default) leaves it out. On the synthetic default and Douban both
    placements lowered test AUC against "none" (the README has the numbers), so PN is opt-in.
    """

    def __init__(self, spec: Spec, transform: Transform, hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.0, aux_hidden: Sequence[int] = (64,), normalization: str = "none",
                 pn_momentum: float = 0.9, **kwargs: Any) -> None:
        super().__init__(spec, transform, **kwargs)
        if normalization not in ("hidden", "input", "none"):
            raise ValueError(f"normalization must be 'hidden', 'input' or 'none', got {normalization!r}")
        m = self.num_domains
        self.normalization = normalization
        self.input_norm = PartitionedNormalization(m, pn_momentum, name="pn_input") \
            if normalization == "input" else None
        self.tower = StarTower(hidden, m, dropout=dropout, normalization=normalization == "hidden",
                               pn_momentum=pn_momentum, name="star")
        self.aux = MLP(aux_hidden, name="aux")
        self.aux_out = tf_keras.layers.Dense(1, name="aux_out")

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        x, embedded, domain = self.features(inputs, with_domain=False)
        h = self.input_norm(x, domain, training=training) if self.input_norm is not None else x
        s_m = self.tower(h, domain, training=training)
        s_a = self.aux_out(self.aux(tf.concat([embedded[DOMAIN_KEY], x], -1), training=training))
        return self.output_logit(inputs, tf.squeeze(s_m + s_a, -1))

    def prepare_inference(self) -> None:
        if self.tower.built:
            self.tower.fuse()


class MMoE(CTRModel):
    """Experts shared by all domains, one softmax gate and one tower per domain (Ma et al., KDD 2018)."""

    def __init__(self, spec: Spec, transform: Transform, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.0, num_experts: int = 4, tower: Sequence[int] = (64,), **kwargs: Any) -> None:
        super().__init__(spec, transform, **kwargs)
        m = self.num_domains
        self.num_experts = int(num_experts)
        self.experts = [MLP(hidden, dropout=dropout, name=f"expert_{k}") for k in range(num_experts)]
        self.gates = tf_keras.layers.Dense(m * num_experts, name="gates")
        self.tower = domain_tower(tower, m, name="tower")

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        x, _, domain = self.features(inputs)
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)     # [B, K, H]
        logits = tf.reshape(self.gates(x), [-1, self.num_domains, self.num_experts])
        # Select each example's own gate (a one-hot contraction keeps the static shape [B, K]).
        own = tf.einsum("bmk,bm->bk", logits, tf.one_hot(domain, self.num_domains))
        gate = tf.nn.softmax(own, axis=-1)
        h = tf.reduce_sum(experts * gate[..., None], axis=1)
        for layer in self.tower:
            h = layer(h, domain)
        return self.output_logit(inputs, tf.squeeze(h, -1))


class Separate(ClickModel):
    """One model per domain: its own embeddings and MLP; each example meets only its domain's model."""

    def __init__(self, spec: Spec, transform: Transform, hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.0, **kwargs: Any) -> None:
        interaction = kwargs.pop("interaction", "dot")
        interaction_dim = kwargs.pop("interaction_dim", 16)
        embeddings_l2 = kwargs.pop("embeddings_l2", 1e-3)
        first_order = {k: kwargs.pop(k) for k in ("first_order", "first_order_prior") if k in kwargs}
        calibration = kwargs.pop("calibration", "platt_users")
        grades, grade_weight = kwargs.pop("grades", True), kwargs.pop("grade_weight", 0.5)
        if kwargs.pop("user_feature", None) is not None:
            raise ValueError("a pretrained user encoder plugs into one shared encoder; 'separate' has one per "
                             "line: transfer into shared_bottom, star or mmoe")
        item = {k: kwargs.pop(k) for k in ("item_encoder", "text_encoder", "frozen_text", "hybrid_combine",
                                           "catalogue") if k in kwargs}
        super().__init__(**kwargs)
        self.spec = spec
        self.num_domains = len(transform.domains)
        self.towers = [SharedBottom(spec, transform, hidden, dropout, embeddings_l2=embeddings_l2,
                                    interaction=interaction, interaction_dim=interaction_dim, **item, **first_order,
                                    calibration="none", grades=False, name=f"domain_{d}")
                       for d in range(self.num_domains)]
        self.calibration = self.calibration_layer(calibration, self.num_domains, spec)
        self.grades = self.grades_layer(grades, grade_weight, transform)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        domain = self.towers[0].encoder.domain_index(inputs)  # every tower knows the same domain list
        logit = route_by_domain(dict(inputs), domain, self.num_domains,
                                lambda d, part: self.towers[d](part, training=training))
        return self.calibrated(inputs, logit, domain)

    def user_groups(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.towers[0].user_groups(inputs)  # every tower has the same user vocabulary


MODELS = {"shared_bottom": SharedBottom, "star": Star, "separate": Separate, "mmoe": MMoE}
__all__ = ["CTRModel", "SharedBottom", "Star", "MMoE", "Separate", "MODELS"]
