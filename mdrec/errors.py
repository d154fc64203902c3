"""The one error type for mistakes a user can make (spec, data, command line).

Library code raises :class:`MdrecError` with a message that names the file, the column and,
for values, the first bad row, and says what to do. The CLI prints the message and exits with
status 2; it never shows a traceback for these.
"""
from __future__ import annotations


class MdrecError(Exception):
    """A problem in the user's input (spec, data files, arguments), with a fix in its message."""

    def __init__(self, message: str, *, path: str | None = None, column: str | None = None,
                 row: int | None = None, hint: str | None = None):
        parts = []
        where = []
        if path:
            where.append(str(path))
        if column:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        if where:
            parts.append(", ".join(where) + ": ")
        parts.append(message)
        if hint:
            parts.append(f" — {hint}")
        super().__init__("".join(parts))
        self.path = path
        self.column = column
        self.row = row
        self.hint = hint
