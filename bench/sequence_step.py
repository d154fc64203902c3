"""The cost of one pretraining step of the user encoder, by part, as ratios in one run.

    python bench/sequence_step.py --data ../shared/data/movielens-1m [--out /tmp/bench-sequential] \
        [--rounds 3] [--batches 40]

Prepares the raw folder as ``bench/sequential.py`` does (OUT/data, reused), builds the default
encoder (autoregressive, the user's items left out of the softmax) over its training sequences,
and times the training step (forward, backward and Adam, a tf.function as ``mdrec pretrain`` runs
it) on the first ``--batches`` batches of epoch 0 (shuffled: a mix of the epoch's window widths),
rounds alternating between the variants:
  kit            the step ``mdrec pretrain`` runs
  kit_xla        the same step compiled with XLA (as ``mdrec pretrain`` ran it before 2026-12-07)
  einsum_lse     the same step with the seen-excluded softmax written as before 2026-12-06 (an
                 einsum and reduce_logsumexp, the mask applied per position)
  encoder_only   the encoder's forward and backward alone, no item softmax (a lower bound)
One JSON line per variant: variant, ms_per_step (the fastest round), compile_s (the first step of
each width: tracing, and XLA's compilation), ratio_to_kit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from mdrec.data.prepare import prepare  # noqa: E402
from mdrec.models.user_encoder import SPECIAL_ROWS, UserEncoder  # noqa: E402
from mdrec.pretraining import objectives as obj  # noqa: E402
from mdrec.pretraining.batches import SequenceBatches  # noqa: E402
from mdrec.pretraining.data import held_out_queries, item_vocabulary, load_source  # noqa: E402
from mdrec.pretraining.model import IDS, PretrainModel  # noqa: E402
from mdrec.pretraining.settings import DEFAULTS, TRAINING  # noqa: E402
from mdrec.spec import load_spec  # noqa: E402
from mdrec.workflows.pretrain_hyperparameters import (encoder_kwargs, resolve_exclude_seen,  # noqa: E402
                                                      resolve_hyperparameters, resolve_negatives)

SPEC = Path(__file__).resolve().parents[1] / "feature_specs" / "movielens-1m-sequential.yaml"
VARIANTS = ("kit", "kit_xla", "einsum_lse", "encoder_only")


def einsum_lse_loss(states: tf.Tensor, targets: tf.Tensor, table: tf.Tensor, bias: tf.Tensor,
                    seen: tf.Tensor) -> tf.Tensor:
    """The seen-excluded cross-entropy as the kit wrote it before 2026-12-06 (same values)."""
    logits = tf.einsum("btd,vd->btv", states, table) + bias
    target = tf.gather(logits, tf.cast(targets, tf.int32), batch_dims=2)
    rest = tf.reduce_logsumexp(tf.where(seen[:, None, :], tf.constant(-1e9, logits.dtype), logits), axis=-1)
    return tf.math.softplus(rest - target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the raw MovieLens-1M folder (ml-1m.inter.gz)")
    parser.add_argument("--out", default="/tmp/bench-sequential", help="where the prepared data goes (reused)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()

    prepared = Path(args.out) / "data"
    if not (prepared / "prepare.json").is_file():
        prepare("movielens-1m-sequential", args.data, prepared)
    spec = load_spec(SPEC)
    hp = resolve_hyperparameters({"objective": DEFAULTS["objective"]}, spec)
    held = held_out_queries(load_source(prepared, spec), seed=0)
    vocabulary = item_vocabulary(held.train)
    index = {item: SPECIAL_ROWS + i for i, item in enumerate(vocabulary)}
    negatives = resolve_negatives(hp["negatives"], len(vocabulary))
    exclude_seen = resolve_exclude_seen(hp["exclude_seen"], hp["objective"], negatives, len(vocabulary))
    encoder = UserEncoder(vocabulary, name="user_encoder", **encoder_kwargs(hp))
    model = PretrainModel(encoder, hp["objective"], negatives=negatives, exclude_seen=exclude_seen, seed=0)
    histories = [np.asarray([index[i] for i in items], np.int32) for items in held.train.values() if items]
    batches = SequenceBatches(histories, model.window, TRAINING["batch_size"], 0)
    model.targets_per_batch = batches.mean_targets_per_batch(next_item=True)
    model.build_variables(batches.sample())
    optimizer = tf_keras.optimizers.Adam(TRAINING["learning_rate"])
    optimizer.build(model.trainable_variables)
    sample = [x for x, _ in batches.epoch(0, 0)][:args.batches]
    kit_loss = obj.seen_excluded_loss

    def encoder_only(x: dict) -> tf.Tensor:
        states, _ = encoder.encode_ids(tf.cast(x[IDS], tf.int32)[:, :-1], None, training=True)
        return tf.reduce_mean(tf.square(states))

    def make_step(variant: str):
        xla = variant == "kit_xla"

        @tf.function(jit_compile=xla, reduce_retracing=not xla)
        def step(x: dict) -> tf.Tensor:
            # The loss function is looked up when the step is traced, once per variant and width.
            obj.seen_excluded_loss = einsum_lse_loss if variant == "einsum_lse" else kit_loss
            with tf.GradientTape() as tape:
                loss = encoder_only(x) if variant == "encoder_only" else model.training_loss(x)
            obj.seen_excluded_loss = kit_loss
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return step

    steps, compile_s = {}, {}
    for variant in VARIANTS:
        steps[variant] = make_step(variant)
        started = time.perf_counter()
        for width in sorted({x[IDS].shape[1] for x in sample}):
            float(steps[variant](next(x for x in sample if x[IDS].shape[1] == width)))
        compile_s[variant] = time.perf_counter() - started
    best = {variant: float("inf") for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            started = time.perf_counter()
            for x in sample:
                loss = steps[variant](x)
            float(loss)
            best[variant] = min(best[variant], (time.perf_counter() - started) / len(sample))
    for variant in VARIANTS:
        print(json.dumps({"variant": variant, "ms_per_step": round(1000 * best[variant], 1),
                          "compile_s": round(compile_s[variant], 1),
                          "ratio_to_kit": round(best[variant] / best["kit"], 3)}), flush=True)


if __name__ == "__main__":
    main()
