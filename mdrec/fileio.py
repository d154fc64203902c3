"""Atomic file and folder writes: other programs (TF Serving, dashboards, a resumed run) may be
watching, so nothing is ever visible half-written. Write to a temporary sibling, then rename."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it: set and put back
    os.umask(mask)
    return mask


def _umask_mode() -> int:
    # mkstemp creates files 0600; published files get the mode an ordinary open() would give.
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync and rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_table(frame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a DataFrame as parquet, csv or tsv (by ``fmt`` or the file's suffix), atomically."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    with atomic_file(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt in ("csv", "tsv"):
            frame.to_csv(tmp, index=False, sep="," if fmt == "csv" else "\t")
        else:
            raise ValueError(f"unknown table format {fmt!r}; use parquet, csv or tsv")
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in metrics; write them as plain JSON numbers/lists.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success rename it to ``path``.

    On an exception the temporary folder is removed and ``path`` is left as it was. A writer killed
    (kill -9) mid-way leaves its temporary folder; the next writer of ``path`` removes it, and if the
    kill fell between the two renames, puts the previous ``path`` back first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():  # killed between the renames: the old one is the last good
        os.replace(old, path)
    remove_dead_writers_temps(path.parent, f".{path.name}.")
    tmp = writer_temp_dir(path.parent, f".{path.name}.", suffix=".tmp")
    try:
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_WRITER = re.compile(r"(?:^|-)pid(\d+)h([0-9a-f]{8})-")


def writer_mark(pid: int | None = None) -> str:
    """"pid<pid>h<host tag>": who writes a temporary folder, so a later writer can tell a dead
    writer's leftovers from live work. The host tag keeps a folder shared between machines safe:
    another host's pids mean nothing here, so its folders are never judged."""
    host = zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF
    return f"pid{os.getpid() if pid is None else pid}h{host:08x}"


def writer_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str = "") -> Path:
    """A new temporary folder in ``parent`` named ``prefix`` + :func:`writer_mark` + "-..."."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{writer_mark()}-", suffix=suffix, dir=parent))
    # mkdtemp makes it 0700; once renamed it is an ordinary folder (a report, an export TF Serving
    # reads as another user), so it gets the mode os.mkdir would give.
    path.chmod(0o777 & ~_umask())
    return path


def remove_dead_writers_temps(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Delete the folders :func:`writer_temp_dir` made in ``parent`` with ``prefix`` by a process of
    this host that is gone (killed mid-write); returns them. Live writers' folders are kept."""
    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    here = writer_mark(0).split("h")[1]
    for child in parent.iterdir():
        match = _WRITER.search(child.name[len(prefix):]) if child.name.startswith(prefix) else None
        if match and match.group(2) == here and child.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
