"""Versioned model folders as TF Serving polls them: export/MODEL/<integer version>/.

TF Serving's file-system source loads every all-digit subfolder it sees, so a version must appear
complete or not at all: it is written under a hidden temporary name (``.tmp-<version>-pid<pid>h<host>-xxxx``, never
all digits) in the same folder and renamed when complete. Old versions are renamed to a hidden name
before they are deleted, for the same reason. An export killed mid-way leaves its hidden folder; the
next export to the model removes it (its pid is gone).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

from mdrec.errors import MdrecError
from mdrec.fileio import remove_dead_writers_temps, writer_temp_dir

EXPORT_JSON = "export.json"  # assets/export.json: what an mdrec export holds (model, family, signatures)
_VERSION = re.compile(r"^[0-9]+$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_model_name(name: str) -> str:
    """A model name usable as a folder and in TF Serving's URLs (/v1/models/NAME)."""
    if not _MODEL_NAME.match(name or "") or _VERSION.match(name):
        raise MdrecError(f"model name '{name}' is not usable", hint="use letters, digits, '_', '-' or '.', "
                         "starting with a letter or digit and not all digits, e.g. ctr_star")
    return name


def versions(model_dir: str | Path) -> list[int]:
    """Version numbers present under ``model_dir`` (all-digit folder names), ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and _VERSION.match(p.name))


def is_complete(version_dir: str | Path) -> bool:
    version_dir = Path(version_dir)
    return (version_dir / "saved_model.pb").is_file() and (version_dir / "variables" / "variables.index").is_file()


def latest_version(model_dir: str | Path) -> int:
    """The highest complete version; an error that says how to make one when there is none."""
    complete = [v for v in versions(model_dir) if is_complete(Path(model_dir) / str(v))]
    if not complete:
        raise MdrecError("no exported version here", path=str(model_dir),
                         hint="export one with `mdrec export --run RUN --name MODEL`")
    return complete[-1]


def next_version(model_dir: str | Path) -> int:
    present = versions(model_dir)
    return present[-1] + 1 if present else 1


def check_free(model_dir: str | Path, version: int) -> None:
    """Refuse to overwrite a version: a served version must never change under TF Serving."""
    if version < 0:
        raise MdrecError(f"version {version} is negative", hint="versions are integers >= 0")
    if (Path(model_dir) / str(version)).exists():
        raise MdrecError(f"version {version} already exists", path=str(Path(model_dir) / str(version)),
                         hint=f"pass another --version, or omit it to export version {next_version(model_dir)}")


@contextlib.contextmanager
def staged_version(model_dir: str | Path, version: int) -> Iterator[Path]:
    """Yield a temporary folder beside the version; publish it by rename when the block succeeds.

    On any exception the temporary folder is removed and no version folder appears.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    check_free(model_dir, version)
    for prefix in (".tmp-", ".old-"):  # left by exports or prunes killed mid-way
        remove_dead_writers_temps(model_dir, prefix)
    tmp = writer_temp_dir(model_dir, f".tmp-{version}-")
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700; a server under another user must read it
        yield tmp
        _publish(tmp, model_dir / str(version))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, target: Path) -> None:
    _fsync_tree(tmp)
    try:
        os.rename(tmp, target)  # atomic; fails if another export created a (non-empty) version meanwhile
    except OSError:
        if target.exists():
            raise MdrecError(f"version {target.name} appeared while exporting (another export?)",
                             path=str(target), hint="export again; the next free version is chosen") from None
        raise
    _fsync_dir(target.parent)


def prune(model_dir: str | Path, keep: int, protect: set[int] = frozenset()) -> list[int]:
    """Delete all but the ``keep`` highest versions (never those in ``protect``); returns them."""
    if keep <= 0:
        return []
    model_dir = Path(model_dir)
    present = versions(model_dir)
    doomed = [v for v in present[:-keep] if v not in protect]
    for version in doomed:
        # Hide it first: a poller must never see a version folder that is half deleted.
        trash = writer_temp_dir(model_dir, f".old-{version}-")
        os.rename(model_dir / str(version), trash / "v")
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def format_tree(path: str | Path) -> str:
    """The folder as an indented tree with file sizes (for showing what an export holds)."""
    path = Path(path)
    lines = [f"{path}/"]

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), _sort_key(p.name)))
        for index, entry in enumerate(entries):
            last = index == len(entries) - 1
            branch, extend = ("└── ", "    ") if last else ("├── ", "│   ")
            if entry.is_dir():
                lines.append(f"{prefix}{branch}{entry.name}/")
                walk(entry, prefix + extend)
            else:
                lines.append(f"{prefix}{branch}{entry.name}  ({_size(entry.stat().st_size)})")

    if path.is_dir():
        walk(path, "")
    return "\n".join(lines)


def _sort_key(name: str) -> tuple:
    # Versions in numeric order (10 after 9), everything else by name.
    return (0, int(name), "") if _VERSION.match(name) else (1, 0, name)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _read_umask() -> int:
    # os.umask can only be read by setting it: do it once, at import, not while threads write files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_tree(folder: Path) -> None:
    # Flush the files before the rename makes them visible, so a crash cannot publish empty files.
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
