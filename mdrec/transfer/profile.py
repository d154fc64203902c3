"""The profile task: predict a user attribute (age group, gender, occupation...) from the
pretrained user vector alone (PeterRec's test of how general a user representation is).

Users (not events) are the examples: each user of the log with a value in the target column is
one row, labelled with their most frequent value; users are split train / valid / test by a
seeded permutation. The sanity row predicts the training majority class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.log import load_log
from mdrec.errors import MdrecError
from mdrec.layers.mlp import MLP
from mdrec.spec import load_spec
from mdrec.transfer.user_feature import PretrainedUser

USER = "user_id"  # the profile model's one input: raw user ids


class ProfileModel(tf_keras.Model):
    """call({"user_id": tf.string [B]}) -> class logits float32 [B, num_classes].

    ``user``: the pretrained user feature (:class:`PretrainedUser`), read through an MLP."""

    def __init__(self, user: PretrainedUser, classes: Sequence[str], hidden: Sequence[int] = (64,),
                 dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.classes = list(classes)
        self.user = user
        self.mlp = MLP(hidden, dropout=dropout, name="u_mlp")
        self.head = tf_keras.layers.Dense(len(self.classes), name="logits")

    def call(self, inputs, training: bool = False) -> tf.Tensor:
        return self.head(self.mlp(self.user(inputs[USER], training=training), training=training))

    def training_loss(self, inputs, labels) -> tf.Tensor:
        return tf_keras.losses.sparse_categorical_crossentropy(tf.cast(labels, tf.int32), self(inputs, training=True),
                                                               from_logits=True)


def user_labels(path: str, spec_path: str, column: str) -> pd.Series:
    """user id -> the user's most frequent value of ``column`` (rows without one are skipped)."""
    spec = load_spec(spec_path)
    names = {f.name for f in spec.features}
    if column not in names:
        raise MdrecError(f"--target '{column}' is not a feature of the spec", path=str(spec_path),
                         hint=f"pick a user column: {', '.join(f.name for f in spec.by_role('user'))}")
    if spec.feature(column).role != "user":
        raise MdrecError(f"--target '{column}' is not a user attribute (its role is {spec.feature(column).role})",
                         path=str(spec_path), hint=f"pick one of: {', '.join(f.name for f in spec.by_role('user'))}")
    frame = load_log(path, spec).frame
    values = frame[[spec.user_id.name, column]].astype({column: object})
    values = values[values[column].notna() & (values[column].astype(str) != "")]
    if values.empty:
        raise MdrecError(f"column '{column}' has no values", path=str(path), hint="pick another --target")
    return values.groupby(spec.user_id.name)[column].agg(lambda s: s.astype(str).value_counts().index[0])


def split_users(users: np.ndarray, seed: int, valid: float = 0.1, test: float = 0.1) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(users))
    n_test, n_valid = int(round(test * len(users))), int(round(valid * len(users)))
    return {"test": users[order[:n_test]], "valid": users[order[n_test:n_test + n_valid]],
            "train": users[order[n_test + n_valid:]]}


def profile_logits(model: ProfileModel, users: np.ndarray) -> np.ndarray:
    """Class logits float32 [N, num_classes] of ``users`` (raw ids)."""
    from mdrec.training.inference import run_batched

    return run_batched(model, "_mdrec_profile_step", lambda x: model(x, training=False),
                       {USER: tf.TensorSpec([None], tf.string)}, {USER: np.asarray(users, dtype=object)})


def profile_report(model: ProfileModel, users: np.ndarray, labels: np.ndarray, majority: int,
                   source_users: frozenset) -> pd.DataFrame:
    """Accuracy and macro-F1 of the model and of the majority class: all users, with and without
    source history."""
    scores = profile_logits(model, users)
    predicted = scores.argmax(1) if len(scores) else np.zeros(0, int)
    known = np.isin(users, list(source_users))
    rows = []
    for slice_name, mask in (("ALL", np.ones(len(users), bool)), ("with source history", known),
                             ("no source history", ~known)):
        for scorer, guess in (("model", predicted), ("majority class", np.full(len(users), majority))):
            n = int(mask.sum())
            rows.append({"slice": slice_name, "model": scorer, "users": n,
                         "accuracy": accuracy_score(labels[mask], guess[mask]) if n else float("nan"),
                         "macro_f1": f1_score(labels[mask], guess[mask], average="macro",
                                              labels=np.arange(len(model.classes)), zero_division=0)
                         if n else float("nan")})
    return pd.DataFrame(rows).set_index("slice")
