"""TF Serving warmup requests: assets.extra/tf_serving_warmup_requests.

A TFRecord of ``tensorflow.serving.PredictionLog`` records; TF Serving replays them when it loads a
version, so the first real request does not pay for graph initialisation. TF Serving reads at most
1000 records.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit per warmup file


def predict_log(model_name: str, signature_name: str, batch: dict[str, np.ndarray],
                dtypes: dict[str, tf.DType]) -> prediction_log_pb2.PredictionLog:
    """One PredictionLog record holding a PredictRequest for ``batch``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, values in batch.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtypes[name]))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup(path: str | Path, records: list[prediction_log_pb2.PredictionLog]) -> Path:
    """Write ``records`` as the TFRecord file TF Serving replays."""
    if len(records) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(records)} warmup records; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return path


def read_warmup(path: str | Path) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The PredictionLog records of a warmup file."""
    for raw in tf.data.TFRecordDataset(str(path)):
        yield prediction_log_pb2.PredictionLog.FromString(raw.numpy())


def request_inputs(record: prediction_log_pb2.PredictionLog) -> tuple[str, dict[str, np.ndarray]]:
    """(signature name, inputs as arrays) of a predict_log record."""
    request = record.predict_log.request
    return request.model_spec.signature_name, {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
