"""``mdrec request``: the TF Serving REST predict body for rows of a log.

The rows are validated with the spec packaged in the export's assets (the same checks as training
data), turned into raw model inputs, and written in TF Serving's row format:
``{"signature_name": ..., "instances": [{input: value, ...}, ...]}``.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.io import read_file, table_files
from mdrec.data.log import DOMAIN, Log, canonicalize
from mdrec.data.pipeline import model_inputs
from mdrec.data.transform import Transform, lookup_keys
from mdrec.errors import MdrecError
from mdrec.export.versions import EXPORT_JSON, is_complete, latest_version
from mdrec.spec import Spec, load_spec


@dataclass
class RestRequest:
    """A predict request: its JSON body, where to send it, and notes for the user."""

    body: dict
    model: str
    version: int
    url: str
    notes: list[str] = field(default_factory=list)

    def json(self) -> str:
        # NaN (a missing numeric value) is written as NaN, which TF Serving's JSON parser accepts.
        return json.dumps(self.body, ensure_ascii=False)

    def curl(self, body_file: str = "request.json") -> str:
        return (f"curl -s -X POST -H 'Content-Type: application/json' --data @{shlex.quote(body_file)} "
                f"{self.url}")


def version_folder(export: str | Path, version: int | None = None) -> tuple[Path, str, int]:
    """(version folder, model name, version) for export/MODEL [+ version], or export/MODEL/N."""
    export = Path(export)
    if is_complete(export) and export.name.isdigit():
        if version is not None and version != int(export.name):
            raise MdrecError(f"--version {version} disagrees with the version folder given", path=str(export))
        return export, export.parent.name, int(export.name)
    if not export.is_dir():
        raise MdrecError("export folder not found", path=str(export), hint="pass export/MODEL")
    version = latest_version(export) if version is None else version
    folder = export / str(version)
    if not is_complete(folder):
        raise MdrecError(f"no complete version {version}", path=str(folder),
                         hint="leave out --version to use the latest")
    return folder, export.name, version


def rest_request(export: str | Path, rows: str | Path, *, version: int | None = None,
                 signature: str = "serving_default", host: str = "http://localhost:8501") -> RestRequest:
    """The REST predict request for ``rows`` (CSV/TSV/Parquet file or folder) against an export."""
    folder, model, version = version_folder(export, version)
    assets = folder / "assets"
    if not (assets / EXPORT_JSON).is_file():
        raise MdrecError(f"not an mdrec export (no assets/{EXPORT_JSON})", path=str(folder))
    info = json.loads((assets / EXPORT_JSON).read_text())
    if signature not in info["signatures"]:
        raise MdrecError(f"the export has no signature '{signature}'", path=str(folder),
                         hint=f"its signatures: {', '.join(info['signatures'])}")
    spec = load_spec(assets / "spec.yaml")
    transform = Transform.load(assets / "transform.json")
    notes: list[str] = []
    logs, histories = [], []
    for file in table_files(rows):
        frame = read_file(file)
        log = canonicalize(_fill_unsent_columns(frame, spec), spec, source=str(file),
                           known_domains=transform.domains)
        logs.append(log)
        histories.append(_history(frame, log, spec, str(file), notes))
    log = Log.concat(logs) if len(logs) > 1 else logs[0]
    history = np.concatenate(histories) if spec.sequence else None
    inputs = model_inputs(log, spec, history)
    wanted = list(info["signatures"][signature]["inputs"])
    missing = [name for name in wanted if name not in inputs]
    if missing:
        raise MdrecError(f"signature '{signature}' needs input(s) {', '.join(missing)}, which the rows "
                         "cannot provide", path=str(rows))
    instances = [{name: _json_value(inputs[name][row]) for name in wanted} for row in range(len(log))]
    url = f"{host}/v1/models/{model}/versions/{version}:predict"
    return RestRequest({"signature_name": signature, "instances": instances}, model, version, url, notes)


def _fill_unsent_columns(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    # The label and time are validated for logs but never sent: rows without them are fine here.
    fill = {c: 0 for c in (spec.label.column, spec.time) if c and c not in frame.columns}
    return frame.assign(**fill) if fill else frame


def _history(frame: pd.DataFrame, log: Log, spec: Spec, source: str, notes: list[str]) -> np.ndarray | None:
    """The rows' behaviour sequences from their ``<item>_history`` column, or empty ones (with a note)."""
    if spec.sequence is None:
        return None
    name, length = spec.sequence.name, spec.sequence.max_length
    out = np.full((len(frame), length), "", dtype=object)
    if name not in frame.columns:
        notes.append(f"{source}: no '{name}' column: sending empty behaviour sequences (the model sees "
                     f"users without history); add the column (item ids oldest first, separated by "
                     f"'{spec.feature(spec.sequence.item).separator}') to send them")
        return out
    item = spec.feature(spec.sequence.item)
    domains = log.frame[DOMAIN].to_numpy(dtype=object)
    for row, value in enumerate(frame[name].to_numpy(dtype=object)):
        items = _items(value, item.separator)[-length:]  # the most recent max_length, oldest first
        # The history input holds table keys ("domain/item" for scope: domain), keyed by this row's domain.
        keys = lookup_keys(np.asarray(items, dtype=object), item, np.full(len(items), domains[row], dtype=object))
        out[row, :len(items)] = keys
    return out


def _items(value, separator: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [v for v in value.split(separator) if v]
    return [str(v) for v in value if str(v)]


def _json_value(value):
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(str(np.float32(value)))  # the shortest decimal that is the same float32
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)
