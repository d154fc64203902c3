"""Text the user hands us (specs, task files, CSV logs) must be UTF-8; anything else is one clear
error naming the file and the first line that is not, instead of a ``UnicodeDecodeError`` traceback
that points at a byte offset."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mdrec.errors import MdrecError

UTF8_HINT = "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)"


def first_undecodable_line(lines: Iterable[bytes]) -> tuple[int, bytes] | None:
    """(1-based line number, the offending bytes) of the first line that is not UTF-8, or None."""
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return number, line[max(exc.start - 10, 0):exc.end + 10]
    return None


def not_utf8(path: str | Path, lines: Iterable[bytes]) -> MdrecError:
    """The error for a file that failed to decode, naming its first bad line."""
    found = first_undecodable_line(lines)
    where = f" at line {found[0]} (near {found[1]!r})" if found else ""
    return MdrecError(f"is not UTF-8 text{where}", path=str(path), hint=UTF8_HINT)


def read_utf8(path: str | Path) -> str:
    """The whole file as text; a file that is not UTF-8 raises :func:`not_utf8`'s error."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8(path, data.splitlines()) from None
