"""Training throughput of each CTR model, per phase, against a minimal Keras reference, in one run.

    python bench/ctr_throughput.py --data ../shared/data/douban-book-music
    python bench/ctr_throughput.py --data ../shared/data/douban-book-music --peer-widths

Each model trains through the kit's own path (`train_run`: the spec's string features, the kit's
input pipeline, its fit loop with checkpoints and validation) for ``--epochs`` epochs (default 2);
the last epoch is measured (the first one traces). Phases, as JSON lines
``{"model", "batch", "phase", "ex_per_s", "seconds", ...}``:

  input_pipeline   the epoch's batches alone (no training), training examples per second
  training_loop    the whole epoch as fit records it (steps + input waits + bookkeeping)
  train_steps      the time inside the training steps only (``step_seconds`` of history.json)
  validation       the scoring at the epoch's end (the validation split and the 20,000 training rows
                   of the train curves), examples per second
  checkpointing    the rest of the epoch's end (best weights, checkpoint, history, TensorBoard), seconds

and, for ``model: reference``, a minimal tf_keras model with the same ID embeddings (dims and
vocabulary sizes of the spec) and the same hidden widths, fed integer ids from memory and trained
with plain ``fit`` (Adam): the speed of this stack on this machine. Each model's ``training_loop``
and ``train_steps`` lines carry ``over_reference`` (its examples/s over the reference's at the same
batch size; 1.0 = as fast). The models train with their defaults (no dropout). ``--dropout R``
trains them with dropout R instead and adds two references: ``reference (dropout R)``, dropout after
each hidden layer with the kit's layer (``mdrec.layers.dropout.ByteDropout``;
``over_reference_with_dropout`` on the models' lines separates the kit's overhead from that
modelling choice), and ``reference (Keras Dropout R)`` with Keras' Dropout (a float drawn per value);
the first carries ``over_keras_dropout``, what the kit's layer saves. MMoE does the work of four
such MLPs (its experts): with ``mmoe`` among ``--models``, a reference of its own shape
(``reference (mmoe, 4 experts)``, with dropout R too under ``--dropout``; gates and per-line
towers as plain Keras layers) and ``over_mmoe_reference...`` on its lines.
``two_tower`` (issue 22's "the same for two-tower") trains on the training clicks with its
defaults and is compared with its own reference, ``reference (two_tower)``: a ``tfrs.Model`` of the
same shape (user id and line embeddings -> 128 -> 32 against item id -> 128 -> 32, L2-normalised,
the line one-hot against a per-item-and-line offset, ``tfrs.tasks.Retrieval`` with the logQ
correction and accidental hits removed) fitted with plain ``fit`` on integer ids from memory; its
``over_reference`` is against that one. Variants run in alternation, ``--rounds`` times; the median
is printed.

``--peer-widths``: the widths of the PyTorch peer in issue 22 (STAR 128,64,32; shared-bottom 128;
no dot interaction; 16-dim ids): its STAR ran 94k and its shared-bottom 281k examples/s at batch
4096 on the same 2 cores.

Real data stays outside the repository: --work defaults to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from mdrec.data.transform import Transform  # noqa: E402
from mdrec.layers.dropout import ByteDropout  # noqa: E402
from mdrec.progress import quiet_progress  # noqa: E402
from mdrec.spec import SHIPPED_SPECS, load_spec  # noqa: E402
from mdrec.training import loop, validation  # noqa: E402
from mdrec.training.run import TrainConfig  # noqa: E402
from mdrec.workflows.train import train_run  # noqa: E402
from ctr_models import prepared  # noqa: E402

MODELS = ("star", "shared_bottom", "mmoe", "two_tower")
PEER = {"star": {"hidden": [128, 64, 32], "interaction": "none"},
        "shared_bottom": {"hidden": [128], "interaction": "none"},
        "mmoe": {"hidden": [128], "interaction": "none"}}
DEFAULT_WIDTHS = [256, 128, 64]
MMOE_WIDTHS, MMOE_EXPERTS = [256, 128], 4  # the kit's MMoE defaults (each expert; a 64-unit tower per line)
TWO_TOWER_WIDTHS, TWO_TOWER_REFERENCE = [128], "reference (two_tower)"  # the two-tower's default hidden widths


class _Measured(Exception):
    """Raised after fit: the rest of train_run (calibration, sanity rows, test tables) is not timed."""


def measure_kit(model: str, batch: int, data: Path, spec_path: Path, work: Path, epochs: int,
                hyperparameters: dict) -> list[dict]:
    """The phases of one model's training at one batch size (the last epoch), as JSON-ready dicts."""
    timings: dict[str, float] = {}
    real_fit, real_finish = loop.fit, loop.finish_epoch

    def timed_fit(model_, run, config, train, validate, **kwargs):
        started, rows = time.perf_counter(), 0
        for _, y in train.epoch(0, 0):
            rows += int(y.shape[0])
        timings["input_pipeline"] = time.perf_counter() - started
        timings["train_rows"] = rows
        real_fit(model_, run, config, train, validate, **kwargs)
        raise _Measured

    def timed_finish(model_, run, config, state, manager, history, entry, validate, *args, **kwargs):
        def timed_validate():
            started = time.perf_counter()
            out = validate()
            timings["validation"] = time.perf_counter() - started
            return out

        started = time.perf_counter()
        out = real_finish(model_, run, config, state, manager, history, entry, timed_validate, *args, **kwargs)
        timings["finish"] = time.perf_counter() - started
        return out

    config = TrainConfig(model=model, train=str(data / "train.parquet"), valid=str(data / "valid.parquet"),
                         epochs=epochs, batch_size=batch, patience=epochs + 1, seed=0,
                         hyperparameters=hyperparameters)
    run = work / f"{model}-{batch}-{time.time_ns()}"
    loop.fit, loop.finish_epoch = timed_fit, timed_finish
    try:
        with quiet_progress():
            train_run(spec_path, config, run, log=lambda *_: None)
    except _Measured:
        pass
    finally:
        loop.fit, loop.finish_epoch = real_fit, real_finish
    last = json.loads((run / "history.json").read_text())[-1]
    rows = timings["train_rows"]
    # Validation scores the validation split and a fixed sample of training rows (the train curves).
    valid_rows = _rows(data / "valid.parquet") + min(validation.TRAIN_SAMPLE, rows)
    base = {"model": model, "batch": batch}
    return [
        {**base, "phase": "input_pipeline", "ex_per_s": rows / timings["input_pipeline"],
         "seconds": timings["input_pipeline"]},
        {**base, "phase": "training_loop", "ex_per_s": rows / last["seconds"], "seconds": last["seconds"],
         "steps": last["steps"]},
        {**base, "phase": "train_steps", "ex_per_s": rows / last["step_seconds"], "seconds": last["step_seconds"],
         "ms_per_step": 1000 * last["step_seconds"] / last["steps"]},
        # A retrieval run's validation ranks the line's catalogue per query: seconds only.
        {**base, "phase": "validation", "seconds": timings["validation"],
         **({} if model == "two_tower" else {"ex_per_s": valid_rows / timings["validation"]})},
        {**base, "phase": "checkpointing", "seconds": timings["finish"] - timings["validation"]},
    ]


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def measure_reference(batch: int, data: Path, spec_path: Path, widths: list[int], epochs: int,
                      dropout: float = 0.0, layer: str = "kit", experts: int = 0) -> dict:
    """Plain tf_keras fit of embeddings + MLP (``dropout`` after each hidden layer, as the kit's
    MLPs place it; ``layer`` "kit" = ByteDropout, "keras" = tf_keras Dropout) on integer ids from
    memory; the last epoch's examples/s. ``experts`` > 0: MMoE-shaped instead (that many expert
    MLPs of ``widths``, a softmax gate per line, a 64-unit tower per line, every line's gate and
    tower computed for every row and the row's own picked by a one-hot product)."""
    from mdrec.data.log import DOMAIN, load_log

    spec = load_spec(spec_path)
    log = load_log(data / "train.parquet", spec)
    transform = Transform.fit(log, spec)
    ids, inputs, embedded = {}, [], []
    for feature in [f for f in spec.features if f.is_categorical and not f.hash_buckets]:
        vocabulary = transform.vocabularies[feature.table]
        ids[feature.name] = _integer_ids(log.frame[feature.name], vocabulary)
        x = tf_keras.Input([], dtype=tf.int32, name=feature.name)
        inputs.append(x)
        embedded.append(tf_keras.layers.Embedding(len(vocabulary) + 1, feature.embedding_dim)(x))
    lines = {v: i for i, v in enumerate(transform.domains)}
    ids["line"] = np.asarray([lines[v] for v in log.frame[DOMAIN]], np.int32)
    line_id = tf_keras.Input([], dtype=tf.int32, name="line")
    inputs.append(line_id)
    embedded.append(tf_keras.layers.Embedding(len(lines), 8)(line_id))
    h = tf_keras.layers.Concatenate()(embedded)

    def mlp(h):
        for width in widths:
            h = tf_keras.layers.Dense(width, activation="relu")(h)
            if dropout:
                h = (ByteDropout(dropout) if layer == "kit" else tf_keras.layers.Dropout(dropout))(h)
        return h

    if experts:
        line = tf.one_hot(line_id, len(lines))                                                  # [B, M]
        mixed = tf.stack([mlp(h) for _ in range(experts)], axis=1)                        # [B, K, H]
        gates = tf.reshape(tf_keras.layers.Dense(len(lines) * experts)(h), [-1, len(lines), experts])
        gate = tf.nn.softmax(tf.einsum("bmk,bm->bk", gates, line), axis=-1)
        mixed = tf.reduce_sum(mixed * gate[..., None], axis=1)
        towers = [tf_keras.layers.Dense(1)(tf_keras.layers.Dense(64, activation="relu")(mixed)) for _ in lines]
        out = tf.reduce_sum(tf.concat(towers, axis=-1) * line, axis=-1, keepdims=True)
    else:
        out = tf_keras.layers.Dense(1)(mlp(h))
    model = tf_keras.Model(inputs, out)
    model.compile(tf_keras.optimizers.Adam(1e-3), tf_keras.losses.BinaryCrossentropy(from_logits=True))
    labels = log.labels.astype(np.float32)
    seconds = _fit_seconds(model, ids, labels, batch, epochs)
    return {"model": reference_name(dropout, layer, experts), "batch": batch, "phase": "training_loop",
            "ex_per_s": len(labels) / seconds, "seconds": seconds, "widths": widths, "dropout": dropout}


def measure_two_tower_reference(batch: int, data: Path, spec_path: Path, epochs: int, hidden: list[int],
                                embedding_dim: int = 32, temperature: float = 0.05) -> dict:
    """Plain tf_keras ``fit`` of a tfrs two-tower of the kit's default shape on the training clicks,
    integer ids from memory: query = user id and line embeddings -> MLP ``hidden`` -> ``embedding_dim``,
    L2-normalised, with the line one-hot; candidate = item id embedding -> MLP -> ``embedding_dim``,
    L2-normalised, with a learned offset per item and line; ``tfrs.tasks.Retrieval`` with the logQ
    correction (training frequencies) and accidental hits removed. The last epoch's examples/s."""
    import tensorflow_recommenders as tfrs

    from mdrec.data.log import DOMAIN, load_log

    spec = load_spec(spec_path)
    log = load_log(data / "train.parquet", spec)
    clicks = log.frame[log.labels > 0]
    transform = Transform.fit(log, spec)
    lines = {v: i for i, v in enumerate(transform.domains)}
    user_vocabulary, item_vocabulary = (transform.vocabularies[f.table] for f in (spec.user_id, spec.item_id))
    ids = {"user": _integer_ids(clicks[spec.user_id.name], user_vocabulary),
           "item": _integer_ids(clicks[spec.item_id.name], item_vocabulary),
           "line": np.asarray([lines[v] for v in clicks[DOMAIN]], np.int32)}
    users, items = len(user_vocabulary), len(item_vocabulary)
    frequency = np.bincount(ids["item"], minlength=items + 1).astype(np.float32) + 1.0
    probability = tf.constant(frequency / frequency.sum())

    def tower() -> tf_keras.Sequential:
        layers = [tf_keras.layers.Dense(width, activation="relu") for width in hidden]
        return tf_keras.Sequential(layers + [tf_keras.layers.Dense(embedding_dim)])

    class Reference(tfrs.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user = tf_keras.layers.Embedding(users + 1, spec.user_id.embedding_dim)
            self.line = tf_keras.layers.Embedding(len(lines), 8)
            self.item = tf_keras.layers.Embedding(items + 1, spec.item_id.embedding_dim)
            self.offset = tf_keras.layers.Embedding(items + 1, len(lines))
            self.query_tower, self.candidate_tower = tower(), tower()
            self.task = tfrs.tasks.Retrieval(loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True),
                                             temperature=temperature, remove_accidental_hits=True)

        def compute_loss(self, features, training=False):
            query = tf.math.l2_normalize(self.query_tower(tf.concat(
                [self.user(features["user"]), self.line(features["line"])], -1)), axis=-1)
            query = tf.concat([query, tf.one_hot(features["line"], len(lines))], -1)
            candidate = tf.math.l2_normalize(self.candidate_tower(self.item(features["item"])), axis=-1)
            candidate = tf.concat([candidate, self.offset(features["item"])], -1)
            return self.task(query, candidate, candidate_ids=features["item"],
                             candidate_sampling_probability=tf.gather(probability, features["item"]),
                             compute_metrics=False, compute_batch_metrics=False)

    model = Reference()
    model.compile(tf_keras.optimizers.Adam(1e-3))
    seconds = _fit_seconds(model, ids, None, batch, epochs)
    rows = len(ids["item"])
    return {"model": "reference (two_tower)", "batch": batch, "phase": "training_loop", "ex_per_s": rows / seconds,
            "seconds": seconds, "widths": hidden, "dropout": 0.0}


def _integer_ids(values, vocabulary) -> np.ndarray:
    """Each value's row in an embedding table of ``vocabulary`` (1-based; 0 for a value outside it), int32."""
    row = {v: i + 1 for i, v in enumerate(vocabulary)}
    return np.asarray([row.get(v, 0) for v in values], np.int32)


def _fit_seconds(model: tf_keras.Model, x: dict, y: np.ndarray | None, batch: int, epochs: int) -> float:
    """Plain ``fit`` from memory (shuffled); the last epoch's seconds."""
    seconds: list[float] = []

    class EpochTimer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimer()])
    return seconds[-1]


def reference_name(dropout: float, layer: str = "kit", experts: int = 0) -> str:
    shape = f"mmoe, {experts} experts" if experts else ""
    if not dropout:
        return f"reference ({shape})" if shape else "reference"
    what = f"dropout {dropout:g}" if layer == "kit" else f"Keras Dropout {dropout:g}"
    return f"reference ({shape}, {what})" if shape else f"reference ({what})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="raw shared folder, or a prepared folder")
    parser.add_argument("--dataset", default="douban-book-music")
    parser.add_argument("--work", help="where prepared data and runs go (default: a temporary folder)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1024,4096")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternating repeats; the median is printed")
    parser.add_argument("--peer-widths", action="store_true", help="the PyTorch peer's widths (see above)")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="train the models with this dropout and add the dropout references (default 0, "
                             "the models' default)")
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mdrec-throughput-"))
    data = prepared(Path(args.data), args.dataset, work)
    spec_path = SHIPPED_SPECS / f"{args.dataset}.yaml"
    models = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    rate = args.dropout
    rates = [0.0, rate] if rate else [0.0]  # the references' dropout: none, and the models' under --dropout
    references = [(0.0, "kit")] + ([(rate, "kit"), (rate, "keras")] if rate else [])  # (rate, dropout layer)
    measured: dict[tuple, list[dict]] = {}
    for _ in range(args.rounds):
        for batch in batches:
            widths = PEER["star"]["hidden"] if args.peer_widths else DEFAULT_WIDTHS
            if "two_tower" in models:  # its own reference: a tfrs two-tower of the kit's default shape
                measured.setdefault((TWO_TOWER_REFERENCE, batch, "training_loop"), []).append(
                    measure_two_tower_reference(batch, data, spec_path, args.epochs, TWO_TOWER_WIDTHS))
            for dropout, layer in (references if set(models) - {"two_tower"} else ()):
                key = (reference_name(dropout, layer), batch, "training_loop")
                measured.setdefault(key, []).append(measure_reference(batch, data, spec_path, widths, args.epochs,
                                                                      dropout, layer))
            if "mmoe" in models:  # MMoE does four experts' work: a reference of its own shape too
                mmoe_widths = PEER["mmoe"]["hidden"] if args.peer_widths else MMOE_WIDTHS
                for dropout in rates:
                    key = (reference_name(dropout, experts=MMOE_EXPERTS), batch, "training_loop")
                    measured.setdefault(key, []).append(measure_reference(
                        batch, data, spec_path, mmoe_widths, args.epochs, dropout, experts=MMOE_EXPERTS))
            for model in models:
                params = dict(PEER.get(model, {})) if args.peer_widths else {}
                if rate and model != "two_tower":
                    params["dropout"] = rate
                for line in measure_kit(model, batch, data, spec_path, work, args.epochs, params):
                    measured.setdefault((model, batch, line["phase"]), []).append(line)
    def over(out: dict, key: tuple) -> float:
        """``out``'s examples/s over the median of the measured ``key``'s."""
        return round(out["ex_per_s"] / statistics.median(r["ex_per_s"] for r in measured[key]), 3)

    for (model, batch, phase), lines in measured.items():
        out = dict(lines[0])
        for key in ("ex_per_s", "seconds"):
            if key in out:
                out[key] = round(statistics.median(line[key] for line in lines), 3 if key == "seconds" else 0)
        if rate and model == reference_name(rate):
            out["over_keras_dropout"] = over(out, (reference_name(rate, "keras"), batch, "training_loop"))
        if model == "two_tower" and phase in ("training_loop", "train_steps"):
            out["over_reference"] = over(out, (TWO_TOWER_REFERENCE, batch, "training_loop"))
        elif not model.startswith("reference") and phase in ("training_loop", "train_steps"):
            for dropout in rates:
                out["over_reference" + ("_with_dropout" if dropout else "")] = over(
                    out, (reference_name(dropout), batch, "training_loop"))
        if model == "mmoe" and phase in ("training_loop", "train_steps"):
            for dropout in rates:
                out["over_mmoe_reference" + ("_with_dropout" if dropout else "")] = over(
                    out, (reference_name(dropout, experts=MMOE_EXPERTS), batch, "training_loop"))
        out["rounds"] = len(lines)
        out["peer_widths"] = args.peer_widths
        out.setdefault("dropout", 0.0 if model == "two_tower" else rate)  # the references carry their own
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
