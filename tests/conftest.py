"""Shared fixtures: a tiny spec and log made in the test (no real data, no network)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)

TINY_SPEC = textwrap.dedent("""
    name: tiny
    label: {column: click}
    domain: {column: domain}
    time: {column: ts}
    features:
      - {name: user_id, role: user_id, type: categorical, embedding_dim: 4}
      - {name: item_id, role: item_id, type: categorical, embedding_dim: 4}
      - {name: city, role: user, type: categorical, embedding_dim: 2}
      - {name: tags, role: item, type: categorical_list, separator: "|", embedding_dim: 2}
      - {name: title, role: item, type: text, length: 4, embedding_dim: 2}
      - {name: price, role: item, type: numeric, normalize: true}
      - {name: vec, role: item, type: dense_vector, dim: 3}
    sequence: {item: item_id, max_length: 5}
""")


def tiny_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A learnable log: clicks depend on user and item biases; three domains."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n)
    items = rng.integers(0, 30, n)
    user_bias = rng.normal(size=40) * 1.5
    item_bias = rng.normal(size=30) * 1.5
    p = 1 / (1 + np.exp(-(user_bias[users] + item_bias[items] - 0.5)))
    return pd.DataFrame({
        "user_id": [f"u{u}" for u in users],
        "item_id": [f"i{i}" for i in items],
        "domain": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
        "click": (rng.random(n) < p).astype(int),
        "ts": np.sort(rng.integers(1_000, 100_000, n)),
        "city": rng.choice(["x", "y", "z"], n),
        "tags": [f"t{i % 4}|t{i % 3 + 4}" for i in items],
        "title": [f"Red-{i % 5} Thing, nr {i % 3}" for i in items],
        "price": rng.lognormal(size=n).round(3),
        "vec": [" ".join(f"{v:.3f}" for v in rng.normal(size=3)) for _ in range(n)],
    })


def tiny_config(paths: dict, **overrides):
    """A small shared-bottom TrainConfig over ``write_tiny_splits``' files (fields overridable)."""
    from mdrec.training.run import TrainConfig

    base = dict(model="shared_bottom", train=str(paths["train"]), valid=str(paths["valid"]),
                test=str(paths["test"]), epochs=3, batch_size=32, learning_rate=5e-3, patience=5, seed=0,
                checkpoint_every=4, hyperparameters={"hidden": [16], "dropout": 0.0, "embeddings_l2": 0.0})
    base.update(overrides)
    return TrainConfig(**base)


class Crashed(Exception):
    """Raised inside training by :func:`crash_at`: a kill at a known step."""


def crash_at(step: int):
    """An ``on_batch`` callback that crashes the run when it reaches ``step``."""
    def on_batch(current):
        if current == step:
            raise Crashed(step)
    return on_batch


@pytest.fixture
def tiny_spec_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def write_tiny_splits(folder) -> dict:
    """train.csv / valid.csv / test.csv of the tiny log in ``folder``, split by time."""
    frame = tiny_frame(600)
    paths = {}
    for name, part in (("train", frame.iloc[:420]), ("valid", frame.iloc[420:510]), ("test", frame.iloc[510:])):
        paths[name] = folder / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return paths


@pytest.fixture
def tiny_splits(tmp_path):
    return write_tiny_splits(tmp_path)


def reload_and_serve(run_path, test_path, tmp_path):
    """Reload a trained run, predict the test log, save it as a SavedModel and serve the same rows.

    Returns (inputs, predictions in Python, the serving signature, what the signature returned).
    """
    import tensorflow as tf

    from mdrec.export.signatures import ctr_signature
    from mdrec.training.inference import predict
    from mdrec.workflows.export.saved_model import save_for_serving
    from mdrec.workflows.restore import restore_for

    r = restore_for(run_path, test_path)
    model, spec, inputs = r.model, r.spec, r.inputs
    expected = predict(model, inputs)
    save_for_serving(model, tmp_path / "saved", {"serving_default": ctr_signature(model, spec, r.transform)})
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    return inputs, expected, served, served(**{k: tf.constant(v) for k, v in inputs.items()})


def events(folder) -> dict[str, list[tuple[int, object]]]:
    """tag -> [(step, value)] of every event file in ``folder`` (scalars as floats, histograms as
    their total count, text as str)."""
    import tensorflow as tf

    out: dict[str, list] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "histograms":
                    item = float(tensor[:, 2].sum())  # buckets of (left, right, count)
                elif plugin == "text":
                    item = tensor.item().decode()
                else:
                    item = float(tensor)
                out.setdefault(value.tag, []).append((event.step, item))
    return out


# The longest modules go first, so that `make test`'s two workers (pytest-xdist, one file per
# worker at a time) do not end with one of them alone on the demo. The Makefile's
# --no-loadscope-reorder keeps this order: xdist's own puts files with more tests first, which
# started the one-test demo file last, alone for its last minutes.
LONG_MODULES = ("test_demo.py", "test_distribute.py", "test_ctr_models.py", "test_export.py", "test_two_tower.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)       # stable: the order inside a module is kept
