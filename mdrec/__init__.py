"""mdrec: multi-domain CTR prediction and ID-based transfer between business lines.

TensorFlow Recommenders is built on the Keras 2 API, so the legacy Keras (``tf_keras``) must be
selected before TensorFlow is first imported anywhere in the process.

The public API (``mdrec.NAME``; each name is imported on first use, so ``import mdrec`` stays
cheap and loads no TensorFlow):

  spec        Spec, load_spec
  models      Star, SharedBottom, MMoE, Separate, TwoTower, UserEncoder, build_model
  workflows   TrainConfig, train_run, evaluate_run, compare_runs, pretrain_run, load_pretrained,
              transfer_run, lifelong_run, index_run, ab_test, compare_branches, export_run
  serving     ServedModel
  errors      MdrecError (every input mistake; its text names the file, column or row and the fix)
"""
import importlib as _importlib
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"  # forced: TFRS refuses Keras 3

__version__ = "0.1.0"

_PUBLIC = {
    "Spec": "mdrec.spec", "load_spec": "mdrec.spec",
    "Star": "mdrec.models.ctr", "SharedBottom": "mdrec.models.ctr", "MMoE": "mdrec.models.ctr",
    "Separate": "mdrec.models.ctr", "TwoTower": "mdrec.models.two_tower", "UserEncoder": "mdrec.models.user_encoder",
    "build_model": "mdrec.models.registry",
    "TrainConfig": "mdrec.training.run", "train_run": "mdrec.workflows.train", "evaluate_run": "mdrec.workflows.evaluate",
    "compare_runs": "mdrec.workflows.compare", "pretrain_run": "mdrec.workflows.pretrain",
    "load_pretrained": "mdrec.workflows.pretrained", "transfer_run": "mdrec.workflows.transfer",
    "lifelong_run": "mdrec.workflows.lifelong", "index_run": "mdrec.workflows.index", "ab_test": "mdrec.workflows.ab",
    "compare_branches": "mdrec.workflows.branches", "export_run": "mdrec.workflows.export",
    "ServedModel": "mdrec.export", "MdrecError": "mdrec.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    # PEP 562: the API's modules load on first use (TensorFlow is slow to import).
    if name in _PUBLIC:
        value = getattr(_importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mdrec' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_PUBLIC))
