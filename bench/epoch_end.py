"""Where an epoch's time goes after its last step: tf.data autotuning against the in-memory pipeline.

An autotuned tf.data iterator, finished or dropped, waited for its tuner thread's next wake-up
(periods of 10 ms x 2^k), so history.json's epoch seconds came as 2.56 s x 2^k and every validation
pass stalled too. ``mdrec.data.pipeline.in_memory`` turns the tuner off for batches of arrays in
memory. This script trains the same shared-bottom run with both pipelines, alternating, and prints
one JSON line per epoch:

  {"pipeline": "in_memory" | "autotune", "round": r, "epoch": e, "epoch_seconds": history.json's,
   "steps_seconds": the epoch's start to its last step's end, "after_last_step": the difference,
   "validation_seconds": the epoch's last step to its summary line}

and a last line with the ratios autotune / in_memory of the summed epoch and validation seconds
(epochs 2 onwards: the first traces the step function).

    python bench/epoch_end.py [--impressions 100000] [--epochs 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from mdrec.data import pipeline, synthetic  # noqa: E402
from mdrec.training.run import TrainConfig  # noqa: E402
from mdrec.workflows.train import train_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def autotuned(batches: tf.data.Dataset) -> tf.data.Dataset:
    """The pipeline before the change: prefetch with tf.data's autotuning."""
    return batches.prefetch(tf.data.AUTOTUNE)


def one_run(paths: dict, out: Path, epochs: int) -> list[dict]:
    marks: list[tuple[str, float]] = []
    config = TrainConfig(model="shared_bottom", train=str(paths["train"]), valid=str(paths["valid"]),
                         epochs=epochs, batch_size=1024, learning_rate=2e-3, patience=epochs, seed=0,
                         hyperparameters={"hidden": [256, 128, 64], "dropout": 0.1})
    train_run(ROOT / "feature_specs" / "synthetic.yaml", config, out, overwrite=True,
              log=lambda m: marks.append((m, time.perf_counter())),
              on_batch=lambda step: marks.append(("step", time.perf_counter())))
    history = json.loads((out / "history.json").read_text())
    rows, start, last, epoch = [], None, None, 0
    for message, at in marks:
        if message == "step":
            last = at
        elif message.startswith(f"epoch {epoch + 1}/"):  # the header, logged as the epoch's clock starts
            start = at
        elif message.startswith(f"epoch {epoch + 1}:"):  # the summary line, after validation
            seconds = history[epoch]["seconds"]
            rows.append({"epoch": epoch + 1, "epoch_seconds": seconds, "steps_seconds": round(last - start, 3),
                         "after_last_step": round(seconds - (last - start), 3),
                         "validation_seconds": round(at - last, 3)})
            epoch += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    kept = pipeline.in_memory
    totals = {"in_memory": [0.0, 0.0], "autotune": [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as tmp:
        paths = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(num_impressions=args.impressions)),
                                Path(tmp) / "data")
        for r in range(args.rounds):
            for name, wrap in (("in_memory", kept), ("autotune", autotuned)):
                pipeline.in_memory = wrap
                try:
                    rows = one_run(paths, Path(tmp) / f"{name}-{r}", args.epochs)
                finally:
                    pipeline.in_memory = kept
                for row in rows:
                    print(json.dumps({"pipeline": name, "round": r, **row}), flush=True)
                    if row["epoch"] > 1:
                        totals[name][0] += row["epoch_seconds"]
                        totals[name][1] += row["validation_seconds"]
    print(json.dumps({"measure": "autotune / in_memory",
                      "epoch_seconds_ratio": round(totals["autotune"][0] / totals["in_memory"][0], 3),
                      "validation_seconds_ratio": round(totals["autotune"][1] / totals["in_memory"][1], 3)}))


if __name__ == "__main__":
    main()
