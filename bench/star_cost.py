"""STAR's cost relative to shared-bottom at the same widths, measured in one run.

For 3, 10 and 30 domains: the training step time ratio (targets: <= 1.5x at 3 domains, <= 2x at 30)
and the inference latency ratio of the serving path (target: within 1.2x), for a single request
and for a batch. Variants are measured in alternation, repeated, and the median of the per-round
ratios is reported, since machines here are shared and noisy. Prints one JSON line per measurement.

    python bench/star_cost.py [--rounds 5] [--batch 2000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from mdrec.data.log import canonicalize  # noqa: E402
from mdrec.data.pipeline import labels_of, model_inputs  # noqa: E402
from mdrec.data.transform import Transform  # noqa: E402
from mdrec.layers.domain import fused_inference  # noqa: E402
from mdrec.data.signature import input_signature  # noqa: E402
from mdrec.models.registry import build_model  # noqa: E402
from mdrec.training.loop import LocalSteps  # noqa: E402
from mdrec.spec import parse_spec  # noqa: E402

SPEC = {"name": "bench", "label": {"column": "y"}, "domain": {"column": "d"}, "features": [
    {"name": "user_id", "role": "user_id", "type": "categorical", "embedding_dim": 16},
    {"name": "item_id", "role": "item_id", "type": "categorical", "embedding_dim": 16},
    {"name": "category", "role": "item", "type": "categorical", "embedding_dim": 8},
    {"name": "price", "role": "item", "type": "numeric"}]}


def make_inputs(num_domains: int, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Zipf-like domain sizes, as in production: a few big lines and many small ones.
    weights = 1.0 / np.arange(1, num_domains + 1)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, 20000, rows).astype(str), "item_id": rng.integers(0, 5000, rows).astype(str),
        "category": rng.integers(0, 50, rows).astype(str), "price": rng.random(rows),
        "d": rng.choice([f"d{i:02d}" for i in range(num_domains)], rows, p=weights / weights.sum()),
        "y": rng.integers(0, 2, rows)})
    spec = parse_spec(SPEC)
    log = canonicalize(frame, spec)
    return spec, Transform.fit(log, spec), model_inputs(log, spec), labels_of(log)


def train_step_fn(model):
    optimizer = LocalSteps.optimizer(1e-3)  # the kit's training optimizer
    loss_fn = tf_keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    return step


def timed(fn, repeats: int) -> float:
    fn()  # warm (tracing)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000, help="training batch (the paper's 2000)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(0)
    for num_domains in (3, 10, 30):
        spec, transform, inputs, labels = make_inputs(num_domains, args.batch * 6)
        batch = {k: tf.constant(v[: args.batch]) for k, v in inputs.items()}
        y = tf.constant(labels[: args.batch])
        # A one-domain batch of the same size (how --domain-batches trains, as in the paper).
        rows = np.flatnonzero(inputs["d"] == "d00")[: args.batch]
        assert len(rows) == args.batch, "not enough rows of the biggest domain for a one-domain batch"
        domain_batch = {k: tf.constant(v[rows]) for k, v in inputs.items()}
        domain_y = tf.constant(labels[rows])
        one = {k: tf.constant(v[:1]) for k, v in inputs.items()}
        serve_batch = {k: tf.constant(v[:256]) for k, v in inputs.items()}
        serve_one_domain = {k: tf.constant(v[rows[:256]]) for k, v in inputs.items()}
        models, steps, serves = {}, {}, {}
        for name in ("shared_bottom", "star"):
            model = build_model(name, spec, transform, hidden=[256, 128, 64], dropout=0.0)
            model(batch, training=False)
            model.prepare_inference()
            models[name] = model
            steps[name] = train_step_fn(model)
            serve = tf.function(lambda x, m=model: tf.sigmoid(m(x, training=False)),
                                input_signature=[input_signature(spec)])
            with fused_inference():  # traced as the export traces it
                serve(one)
            serves[name] = serve
        ratios = {"train_step": [], "train_step_domain_batch": [], "serve_1": [], "serve_256": [],
                  "serve_256_one_domain": []}
        absolute = {k: {"shared_bottom": [], "star": []} for k in ratios}
        for _ in range(args.rounds):
            measured = {}
            for name in ("shared_bottom", "star"):  # alternate variants within each round
                measured[name] = {
                    "train_step": timed(lambda: steps[name](batch, y), args.steps),
                    "train_step_domain_batch": timed(lambda: steps[name](domain_batch, domain_y), args.steps)}
                # Served as exported: fused after training (a training step leaves STAR unfused,
                # where inference computes W ⊙ W_p itself: correct, but not the serving path).
                models[name].prepare_inference()
                measured[name] |= {
                    "serve_1": timed(lambda: serves[name](one), 50),
                    "serve_256": timed(lambda: serves[name](serve_batch), 20),
                    "serve_256_one_domain": timed(lambda: serves[name](serve_one_domain), 20)}
            for key in ratios:
                ratios[key].append(measured["star"][key] / measured["shared_bottom"][key])
                for name in measured:
                    absolute[key][name].append(measured[name][key])
        for key, values in ratios.items():
            train_target = 1.5 if num_domains == 3 else (2.0 if num_domains == 30 else None)
            target = {"train_step": train_target, "train_step_domain_batch": train_target,
                      "serve_1": 1.2, "serve_256": 1.2, "serve_256_one_domain": 1.2}[key]
            ratio = float(np.median(values))
            print(json.dumps({"bench": "star_cost", "domains": num_domains, "measure": key,
                              "star_over_shared_bottom": round(ratio, 3), "target_max": target,
                              "meets_target": None if target is None else ratio <= target,
                              "rounds": [round(v, 3) for v in values],
                              "median_ms": {n: round(1000 * float(np.median(v)), 3)
                                            for n, v in absolute[key].items()},
                              "batch": args.batch if key.startswith("train") else int(key.split("_")[1]),
                              "mixed_domains": key in ("train_step", "serve_256")}),
                  flush=True)


if __name__ == "__main__":
    main()
