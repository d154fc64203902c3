"""mdrec: multi-domain CTR prediction and ID-based transfer between business lines.

TensorFlow Recommenders is built on the Keras 2 API, so the legacy Keras (``tf_keras``) must be
selected before TensorFlow is first imported anywhere in the process.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"  # forced: TFRS refuses Keras 3

__version__ = "0.1.0"
