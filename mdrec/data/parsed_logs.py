"""Parsed logs kept in memory, so one process checks a file against a spec once.

A workflow reads the same split several times (training, its sanity rows, the evaluation, the
next step of the demo), and parsing and checking a file costs far more than reading it: about a
second for 160k rows with an 8-number vector column. Entries are keyed by what decides the
result, never by the file's name alone: the bytes' digest and size of every file, the spec's
text and the known lines. Callers get copies, so one caller's change never reaches another.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Sequence, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 8
MAX_BYTES = 256 * 2**20  # files larger than this together are parsed every time (digest cost, memory)


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()


class ParsedLogs:
    """A least-recently-used map from (files' contents, parsing settings) to a parsed value."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple, object] = OrderedDict()

    def key(self, files: Sequence[Path], settings: Hashable) -> tuple | None:
        """The entry's key, or None when the files are too large to keep."""
        sizes = [f.stat().st_size for f in files]
        if sum(sizes) > self.max_bytes:
            return None
        return tuple((size, file_digest(f)) for f, size in zip(files, sizes)), settings

    def get_or_parse(self, files: Sequence[Path], settings: Hashable, parse: Callable[[], T],
                     copy: Callable[[T], T]) -> T:
        """``copy`` of the value kept for these files and settings, parsing them first if needed."""
        key = self.key(files, settings) if self.max_entries else None
        if key is None:
            return parse()
        if key in self._entries:
            self._entries.move_to_end(key)
        else:
            self._entries[key] = parse()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return copy(self._entries[key])  # type: ignore[arg-type]
