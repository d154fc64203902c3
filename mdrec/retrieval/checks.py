"""Checks of the arrays every search takes: embeddings as float32 [rows, d] with no NaN or inf, a
query dimension matching the candidates', a k the catalogue can fill, one id per candidate and line
indices in range. Each failure is an MdrecError that names the array and how to fix it."""
from __future__ import annotations

from typing import Any

import numpy as np

from mdrec.errors import MdrecError


def float_matrix(values: Any, name: str) -> np.ndarray:
    """float32 [rows, d] (a C-contiguous copy only when needed)."""
    array = np.asarray(values.numpy() if hasattr(values, "numpy") else values, dtype=np.float32)
    if array.ndim != 2:
        raise MdrecError(f"{name} must be a 2-D float array [rows, dim], got shape {array.shape}",
                         hint="stack the embeddings into one matrix")
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise MdrecError(f"{name} contain NaN or inf", row=row,
                         hint="check the model that produced the embeddings")
    return np.ascontiguousarray(array)


def check_dims(queries: np.ndarray, dim: int) -> None:
    if queries.shape[1] != dim:
        raise MdrecError(f"queries have dimension {queries.shape[1]} but the candidates have {dim}",
                         hint="embed queries and candidates with the same two-tower model")


def check_k(k: int, size: int, where: str) -> None:
    if k < 1:
        raise MdrecError(f"k must be at least 1, got {k}")
    if k > size:
        raise MdrecError(f"k={k} is larger than {where} ({size} items)",
                         hint=f"ask for k <= {size}")


def id_strings(identifiers: Any, n: int) -> np.ndarray:
    """Item ids as str [N] (bytes are decoded as UTF-8)."""
    values = identifiers.numpy() if hasattr(identifiers, "numpy") else identifiers
    values = np.asarray(values, dtype=object).reshape(-1)
    if len(values) != n:
        raise MdrecError(f"got {len(values)} identifiers for {n} candidates",
                         hint="pass one item id per candidate row, in the same order")
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def check_domains(query_domain: np.ndarray, num_domains: int) -> None:
    bad = (query_domain < 0) | (query_domain >= num_domains)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MdrecError(f"query line index {int(query_domain[row])} is outside 0..{num_domains - 1}", row=row,
                         hint="map line names to indices in the order of `domains`")
