"""TF Serving exports: versioned atomic SavedModels, signatures, warmup requests, serving config.

Public API:
  export_run(run_path, name, export_dir="export", version=None, keep=5) -> Path
  format_tree(path) -> str
  write_serving_config(export_dir, labels=None, batching=Batching()) -> (models.config, batching file)
  rest_request(export, rows, version=None, signature="serving_default") -> RestRequest
  ServedModel(export, version=None)(inputs, signature="serving_default") -> {output: array}
      (in-process scoring; a wrong name, dtype or rank is an MdrecError naming the input)
Model families (what each kind of run exports) are registered in ``mdrec.export.families.FAMILIES``.
"""
from mdrec.export.request import RestRequest, rest_request
from mdrec.export.saved_model import export_run
from mdrec.export.served import ServedModel
from mdrec.export.serving_config import Batching, parse_labels, write_serving_config
from mdrec.export.versions import format_tree

__all__ = ["Batching", "RestRequest", "ServedModel", "export_run", "format_tree", "parse_labels", "rest_request",
           "write_serving_config"]
