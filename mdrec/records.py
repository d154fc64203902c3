"""Paths inside the records mdrec writes (prepare.json, export.json, an A/B report's summary.json).

A record outlives the command that wrote it and is read from other folders, so a path in it is
never relative to that command's working directory (no later reader knows it). It is written
relative to the folder of the record when it lies inside that folder (the folder can then move
as a whole), else absolute; readers resolve a relative path against the record's folder.
"""
from __future__ import annotations

import os
from pathlib import Path


def recorded_path(path: str | os.PathLike, record: str | os.PathLike) -> str:
    """``path`` as written into the record file ``record``: relative to the record's folder when
    inside it (POSIX separators), else absolute."""
    target = Path(os.path.abspath(path))
    folder = Path(os.path.abspath(record)).parent
    try:
        return target.relative_to(folder).as_posix()
    except ValueError:
        return str(target)


def resolve_recorded(value: str | os.PathLike, record: str | os.PathLike) -> Path:
    """A path read from the record file ``record``: an absolute one as it is, a relative one from
    the record's folder. A record written before this rule held a path relative to the working
    directory: that reading is kept when only it exists."""
    path = Path(value)
    if path.is_absolute():
        return path
    beside = Path(record).parent / path
    if not beside.exists() and path.exists():
        return path
    return beside
