"""Latency of the exported serving signature relative to calling the Keras model in-process.

Three variants on the same rows (raw features, all preprocessing in the graph), batch 1 and 256:
  export      the SavedModel's ``serving_default`` loaded with tf.saved_model.load
  tf_function the in-process Keras model under a tf.function with the same input signature
  eager       the plain eager Keras call model(x)
Variants alternate within each round; the median of the per-round ratios is reported, since the
machines here are shared and noisy. Target: the export is no slower than the in-process model
(ratio <= 1.0). Prints one JSON line per measurement.

    python bench/serving_latency.py [--run runs/NAME] [--model star] [--rounds 7]

Without --run, a small STAR run is trained on the seeded synthetic log first (about a minute).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from mdrec.data.pipeline import model_inputs  # noqa: E402
from mdrec.data.signature import input_signature  # noqa: E402
from mdrec.workflows.export import export_run  # noqa: E402
from mdrec.workflows.restore import evaluation_log, load_trained, restore_trained  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "feature_specs" / "synthetic.yaml"
CALLS = {1: 200, 256: 40}   # calls per variant per round


def train_tiny_run(work: Path, model: str) -> Path:
    """A small run on the synthetic generator: 20k impressions, two epochs."""
    from mdrec.data import synthetic
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    paths = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(num_impressions=20000)), work / "data")
    config = TrainConfig(model=model, train=str(paths["train"]), valid=str(paths["valid"]), test=str(paths["test"]),
                         epochs=2, batch_size=512, learning_rate=2e-3, seed=0)
    with contextlib.redirect_stdout(sys.stderr):  # Keras' progress bar: stdout is for the JSON lines
        train_run(SPEC, config, work / "run", log=lambda *_: None)
    return work / "run"


def per_call(fn, batch: dict[str, tf.Tensor], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn(batch)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a trained CTR run (default: train a small one on synthetic data)")
    parser.add_argument("--model", default="star", help="model to train when no --run is given")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_path = Path(args.run) if args.run else train_tiny_run(work, args.model)
        version = export_run(run_path, "bench", export_dir=work / "export")

        run, config, spec, transform, model = load_trained(run_path)
        log, history, _ = evaluation_log(config, spec, transform, config.valid or config.test or config.train)
        inputs = model_inputs(log, spec, history)
        restore_trained(model, run, inputs)
        served = tf.saved_model.load(str(version)).signatures["serving_default"]
        variants = {
            "export": lambda x: served(**x)["probability"],
            "tf_function": tf.function(lambda x: tf.sigmoid(model(x, training=False)),
                                       input_signature=[input_signature(spec)]),
            "eager": lambda x: tf.sigmoid(model(x, training=False)),
        }
        for batch_size, calls in CALLS.items():
            batch = {k: tf.constant(v[:batch_size]) for k, v in inputs.items()}
            # Same rows, same answers: the comparison is between equal computations.
            want = variants["tf_function"](batch).numpy()
            for name, fn in variants.items():
                np.testing.assert_allclose(fn(batch).numpy(), want, rtol=1e-5, atol=1e-5, err_msg=name)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for round_ in range(args.rounds):
                order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
                for name in order:
                    times[name].append(per_call(variants[name], batch, calls if name != "eager" else calls // 4))
            for baseline in ("tf_function", "eager"):
                ratios = [e / b for e, b in zip(times["export"], times[baseline])]
                ratio = float(np.median(ratios))
                print(json.dumps({"bench": "serving_latency", "model": config.model, "batch": batch_size,
                                  "measure": f"export_over_{baseline}", "ratio": round(ratio, 3),
                                  "target_max": 1.0, "meets_target": ratio <= 1.0,
                                  "rounds": [round(r, 3) for r in ratios],
                                  "median_ms": {n: round(1000 * float(np.median(times[n])), 3)
                                                for n in ("export", baseline)}}), flush=True)


if __name__ == "__main__":
    main()
