"""An exported version loaded for in-process scoring, every request checked by input name.

A SavedModel signature called from Python checks dtypes before its graph runs and names a wrong
one by position only (``input #8(zero-based) was expected to be a float tensor``); no code inside
the graph can do better. :class:`ServedModel` checks a request against the signature first, so a
wrong name, a missing input, a wrong dtype or rank is one :class:`MdrecError` naming the input.
Numbers are converted to the input's dtype (an int or a float64 for a float32 input), as TF
Serving's REST API does for JSON numbers; a string for a number, or a number for a string, is refused.

TF Serving itself names the input of a wrong-typed REST value (``Failed to process element: 0 key:
price of 'instances' list``); over gRPC a wrong ``TensorProto`` dtype gets TensorFlow's positional
message, which is why ``mdrec request`` writes typed bodies from the export's own signature.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.export.request import version_folder


class ServedModel:
    """The signatures of one exported version; ``model(inputs)`` scores a request by name.

    Args:
      export: export/MODEL (the latest complete version, or ``version``) or export/MODEL/N.
      version: a version number under export/MODEL.
    """

    def __init__(self, export: str | Path, version: int | None = None):
        self.folder, self.name, self.version = version_folder(export, version)
        self._loaded = tf.saved_model.load(str(self.folder))
        self.signatures: dict[str, tf.types.experimental.ConcreteFunction] = dict(self._loaded.signatures)

    def __call__(self, inputs: Mapping[str, Any], signature: str = "serving_default") -> dict[str, np.ndarray]:
        """Outputs of ``signature`` for ``inputs`` (input name -> array-like [B, ...]) as numpy."""
        if signature not in self.signatures:
            raise MdrecError(f"the export has no signature '{signature}'", path=str(self.folder),
                             hint=f"its signatures: {', '.join(sorted(self.signatures))}")
        fn = self.signatures[signature]
        tensors = checked_inputs(fn, inputs, signature)
        return {key: value.numpy() for key, value in fn(**tensors).items()}


def checked_inputs(fn: tf.types.experimental.ConcreteFunction, inputs: Mapping[str, Any],
                   signature: str = "serving_default") -> dict[str, tf.Tensor]:
    """``inputs`` as tensors of the signature's dtypes, or an MdrecError naming the first bad input."""
    specs = {spec.name: spec for spec in tf.nest.flatten(fn.structured_input_signature)}
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        raise MdrecError(f"input(s) {', '.join(unknown)} are not inputs of signature '{signature}'; its "
                         f"inputs: {', '.join(sorted(specs))}", hint="check the spelling against the spec")
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise MdrecError(f"signature '{signature}' needs input(s) {', '.join(missing)}",
                         hint="send every input the signature lists (mdrec request writes them from a log)")
    return {name: _as_tensor(name, inputs[name], spec) for name, spec in specs.items()}


def _as_tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    array = value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)
    got = _kind(array)
    want = "string" if spec.dtype == tf.string else "integer" if spec.dtype.is_integer else "number"
    allowed = {"string": ("string",), "integer": ("integer",), "number": ("number", "integer")}[want]
    if got not in allowed and array.size:
        raise MdrecError(f"input {name} needs {want} values ({spec.dtype.name}); got {got} values "
                         f"({array.dtype}), e.g. {array.reshape(-1)[0]!r}",
                         hint="send numbers as JSON numbers / floats and ids as strings")
    if spec.shape.rank is not None and array.ndim != spec.shape.rank:
        shape = "[batch]" if spec.shape.rank == 1 else f"[batch, {spec.shape[1]}]"
        raise MdrecError(f"input {name} needs shape {shape}; got {list(array.shape)}",
                         hint="one value per row (a list per row for a vector or history)")
    if want == "string":
        return tf.constant(array.astype(object) if array.dtype.kind == "U" else array, dtype=tf.string)
    return tf.constant(array, dtype=spec.dtype)  # int or float64 -> float32: the REST API does the same


def _kind(array: np.ndarray) -> str:
    if array.dtype.kind in "iu":
        return "integer"
    if array.dtype.kind == "f":
        return "number"
    if array.dtype.kind in "US":
        return "string"
    if array.dtype.kind == "b":
        return "boolean"
    if array.dtype.kind == "O":
        items = [v for v in array.reshape(-1) if v is not None]
        if items and all(isinstance(v, (str, bytes)) for v in items):
            return "string"
        if items and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in items):
            return "number"
        return "mixed"
    return array.dtype.name
