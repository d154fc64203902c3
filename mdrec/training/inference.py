"""A trained model's scores and weights: build its variables, score inputs in batches with one
traced function, save and restore the weights (STAR's serving weights fused on the way)."""
from __future__ import annotations

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
import tf_keras

from mdrec.data.pipeline import predict_dataset
from mdrec.data.signature import input_signature
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory


def build(model: tf_keras.Model, inputs: dict[str, np.ndarray]) -> None:
    """Create the model's variables by calling it on two rows (restores need the variables)."""
    sample = {name: values[:2] for name, values in inputs.items()}
    build_variables = getattr(model, "build_variables", None)  # models with more than one tower
    if build_variables is not None:
        build_variables(sample)
    else:
        model(sample, training=False)


def predict(model: tf_keras.Model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Click probabilities, float64 [N]."""
    _prepare_inference(model)
    spec = getattr(model, "spec", None)
    scores = run_batched(model, "_mdrec_predict_step", lambda x: tf.sigmoid(model(x, training=False)),
                         input_signature(spec) if spec is not None else None, inputs, batch_size)
    return scores.astype(np.float64) if len(scores) else np.zeros(0)


def run_batched(model: tf_keras.Model, name: str, fn, signature: dict | None, inputs: dict[str, np.ndarray],
                batch_size: int = 4096) -> np.ndarray:
    """``fn`` over ``inputs`` in batches, concatenated (empty array when there are no rows).

    One tf.function per model and ``name``, traced with the fixed input ``signature`` (the
    inputs are narrowed to it), not one trace per call.
    """
    step = getattr(model, name, None)
    if step is None:
        step = tf.function(fn, input_signature=[signature] if signature is not None else None,
                           reduce_retracing=True, autograph=uses_autograph(model))
        setattr(model, name, step)
    if signature is not None:
        inputs = {k: v for k, v in inputs.items() if k in signature}
    parts = [step(batch).numpy() for batch in predict_dataset(inputs, batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def uses_autograph(model: tf_keras.Model) -> bool:
    """Whether the model's tf.functions need AutoGraph. A model whose calls branch only on Python
    values says ``autograph = False``: converting its code cost a third of a small run's training
    (seconds per trace); code that branches on tensors (TFRS' tasks) needs the conversion."""
    return bool(getattr(model, "autograph", True))


def _prepare_inference(model: tf_keras.Model) -> None:
    # STAR serves from fused per-domain weights once fused (correct without, one multiply slower).
    prepare = getattr(model, "prepare_inference", None)
    if prepare is not None:
        prepare()


def save_weights(model: tf_keras.Model, folder) -> None:
    _prepare_inference(model)
    with atomic_directory(folder) as tmp:
        tf.train.Checkpoint(model=model).write(str(tmp / "weights"))


def restore_weights(model: tf_keras.Model, folder) -> None:
    status = tf.train.Checkpoint(model=model).read(str(folder / "weights")).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError:
        raise MdrecError("the saved weights do not fit the model its config.json describes (was the run "
                         "trained by another mdrec version?)", path=str(folder),
                         hint="retrain the run with this version") from None
    _prepare_inference(model)
