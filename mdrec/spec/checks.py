"""The checks every part of a spec shares: one error reporter that names the spec's file, and the
small value checks (a mapping, a positive integer, a near-miss spelling)."""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

import numpy as np

from mdrec.errors import MdrecError


class Errors:
    """Raises the first problem found: a spec is fixed one message at a time, each naming the file."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> None:
        raise MdrecError(message, path=self.source)

    def unknown_keys(self, mapping: Mapping, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in mapping:
            if key not in allowed:
                self.fail(f"unknown key '{key}' in {where}{suggest(str(key), allowed)}; "
                          f"allowed: {', '.join(allowed)}")


def as_mapping(value: Any, where: str, err: Errors, shorthand: str | None = None) -> Mapping:
    """A section as a mapping; ``shorthand`` lets ``label: click`` stand for ``label: {column: click}``."""
    if isinstance(value, Mapping):
        return value
    if shorthand is not None and isinstance(value, str):
        return {shorthand: value}
    err.fail(f"'{where}' must be a mapping such as {{column: ...}}")
    raise AssertionError  # unreachable


def positive_int(value: Any, where: str, err: Errors) -> int:
    # bool is an int subclass: `embedding_dim: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        err.fail(f"{where} must be a positive integer, got {value!r}")
    return int(value)


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
