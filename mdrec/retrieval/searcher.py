"""A standalone ScaNN searcher on disk, for Python retrieval without TF Serving.

:func:`write_scann_searcher` builds ScaNN's pybind searcher and writes it with the item ids and a
manifest (format, size, dim, k, settings) to a folder whose asset paths are relative, so it still
loads after the folder is moved; :func:`load_scann_searcher` reads it back as a
:class:`ScannService`.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory, atomic_write_json
from mdrec.retrieval.checks import check_dims, check_k, float_matrix, id_strings
from mdrec.retrieval.scann import ScannSettings, quiet_native_logs, scann_config

SEARCHER_FORMAT = 1
MANIFEST = "mdrec_scann.json"
IDENTIFIERS = "identifiers.json"


def write_scann_searcher(candidates: Any, identifiers: Any, folder: str | Path,
                         settings: ScannSettings | None = None, *, k: int = 10) -> Path:
    """Build ScaNN's pybind searcher over candidates [N, d] and write it, with the identifiers and a
    manifest, to ``folder`` atomically. Asset paths are relative, so the folder may be moved."""
    from scann.scann_ops.py import scann_ops_pybind

    cand = float_matrix(candidates, "candidates")
    check_k(k, len(cand), "the catalogue")
    ids = id_strings(identifiers, len(cand))
    settings = settings or ScannSettings.default_for(len(cand), k)
    settings.check(len(cand), k)
    with quiet_native_logs():
        searcher = scann_ops_pybind.create_searcher(cand, scann_config(settings, cand, k))
    with atomic_directory(folder) as tmp:
        searcher.serialize(str(tmp), relative_path=True)
        (tmp / IDENTIFIERS).write_text(json.dumps(ids.tolist()), encoding="utf-8")
        atomic_write_json(tmp / MANIFEST, {"format": SEARCHER_FORMAT, "size": len(cand), "dim": int(cand.shape[1]),
                                           "k": k, "distance": "dot_product", "settings": asdict(settings)})
    return Path(folder)


class ScannService:
    """A loaded standalone searcher: search(query [d] or [B, d], k) -> (ids, scores), each [k] or
    [B, k] (str / float32; "" and -inf where fewer than k were found)."""

    def __init__(self, searcher: Any, identifiers: np.ndarray, manifest: dict):
        self.searcher, self.identifiers, self.manifest = searcher, identifiers, manifest
        self.k, self.dim = int(manifest["k"]), int(manifest["dim"])
        self.settings = ScannSettings(**manifest["settings"])

    def search(self, query: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.k if k is None else int(k)
        check_k(k, len(self.identifiers), "the catalogue")
        q = np.asarray(query, dtype=np.float32)
        single = q.ndim == 1
        q = float_matrix(q[None] if single else q, "queries")
        check_dims(q, self.dim)
        rows, scores = self.searcher.search_batched_parallel(q, final_num_neighbors=k)
        rows, scores = np.asarray(rows, np.int64), np.asarray(scores, np.float32)
        if rows.shape[1] < k:  # defensive: ScaNN pads batched results to k, but never trust a width
            rows = np.pad(rows, [(0, 0), (0, k - rows.shape[1])])
            scores = np.pad(scores, [(0, 0), (0, k - scores.shape[1])], constant_values=np.nan)
        found = ~np.isnan(scores)
        ids = np.where(found, self.identifiers[rows], "").astype(object)
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        return (ids[0], scores[0]) if single else (ids, scores)


def load_scann_searcher(folder: str | Path) -> ScannService:
    """Load a folder written by :func:`write_scann_searcher`, wherever it now lives."""
    from scann.scann_ops.py import scann_ops_pybind

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise MdrecError(f"not a ScaNN searcher folder (no {MANIFEST})", path=str(folder),
                         hint="pass the folder write_scann_searcher wrote")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != SEARCHER_FORMAT:
        raise MdrecError(f"searcher format {manifest.get('format')} is not {SEARCHER_FORMAT}", path=str(manifest_path),
                         hint="rebuild it with this version of mdrec")
    identifiers = np.array(json.loads((folder / IDENTIFIERS).read_text(encoding="utf-8")), dtype=object)
    searcher = scann_ops_pybind.load_searcher(str(folder), assets_backcompat_shim=False)
    return ScannService(searcher, identifiers, manifest)
