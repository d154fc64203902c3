"""``mdrec export``: a finished run -> a versioned, atomic TF Serving SavedModel.

  export_run(run_path, name, export_dir="export", version=None, keep=5) -> Path

What each kind of run exports (ctr, retrieval, user encoder, lifelong) is registered in
``mdrec.workflows.export.families.FAMILIES``; the serving pieces they share (signatures, warmup
requests, version folders, serving config) are the library package ``mdrec.export``.
"""
from mdrec.workflows.export.saved_model import export_run

__all__ = ["export_run"]
