"""TF Serving exports as a library: signatures, warmup requests, version folders, serving config,
requests and in-process scoring of an export. Writing an export from a run folder is the workflow
``mdrec.workflows.export.export_run``.

Public API:
  format_tree(path) -> str
  write_serving_config(export_dir, labels=None, batching=Batching()) -> (models.config, batching file)
  rest_request(export, rows, version=None, signature="serving_default") -> RestRequest
  ServedModel(export, version=None)(inputs, signature="serving_default") -> {output: array}
      (in-process scoring; a wrong name, dtype or rank is an MdrecError naming the input)
"""
from mdrec.export.request import RestRequest, rest_request
from mdrec.export.served import ServedModel
from mdrec.export.serving_config import Batching, parse_labels, write_serving_config
from mdrec.export.versions import format_tree

__all__ = ["Batching", "RestRequest", "ServedModel", "format_tree", "parse_labels", "rest_request",
           "write_serving_config"]
