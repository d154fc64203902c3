"""Progress of long steps outside training: reading a large raw log, tuning a ScaNN index,
bootstrap resamples, scoring a log through an export.

One rule for all of them, as training's epochs (``mdrec.training.loop``) do it:

- nothing for a short step: nothing appears before ``after`` seconds (SHOW_AFTER_SECONDS);
- on a terminal, a live ``tf_keras.utils.Progbar`` under a line naming the step;
- into a file or a pipe, a line at most every PROGRESS_SECONDS, and a closing line if any was written;
- nothing inside :func:`quiet_progress` (a caller that silences its own log), and nothing for a step
  nested in another reporting step (one bar at a time);
- on **stderr**: stdout carries results that programs parse (bench scripts' JSON lines,
  ``mdrec request``'s body), and a bar there would corrupt them.

Usage::

    for chunk in progress(chunks, label="scoring the log"):
        ...
    with Progress(total_bytes, "reading ratings.tsv.gz", unit="byte") as bar:
        ...
        bar.update(bytes_read)
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

PROGRESS_SECONDS = 60.0  # a progress line this often when the output is not a terminal
SHOW_AFTER_SECONDS = 5.0  # a step that ends sooner shows nothing
_REDRAW_SECONDS = 0.1  # a live bar is redrawn at most this often (tight loops stay cheap)

T = TypeVar("T")
_STATE = threading.local()  # .quiet: inside quiet_progress(); .depth: open Progress objects


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress output inside this block, in this thread (runs whose log is silenced, e.g. a
    demo's many small runs)."""
    before = getattr(_STATE, "quiet", False)
    _STATE.quiet = True
    try:
        yield
    finally:
        _STATE.quiet = before


def progress_verbosity(stream: TextIO | None = None) -> int:
    """Progbar verbosity for ``stream`` (default stdout, as training's bars): 0 inside
    quiet_progress(), 1 (a live bar) on a terminal, 2 (a line now and then) otherwise."""
    if getattr(_STATE, "quiet", False):
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


class Progress:
    """Progress of one long step of ``total`` units (None: unknown), reported on ``stream``.

    Call :meth:`update` (units done so far) or :meth:`advance` as the work goes, and :meth:`close`
    at the end (a ``with`` block does): it finishes the bar, or writes the closing line, only if
    anything was shown. ``verbose``: 0 silent, 1 live bar, 2 lines; default
    :func:`progress_verbosity` of ``stream`` (stderr unless given). ``after``: seconds before
    anything shows (default SHOW_AFTER_SECONDS); ``every``: seconds between lines (verbose 2;
    default PROGRESS_SECONDS).
    """

    def __init__(self, total: int | None, label: str, *, unit: str = "step", after: float | None = None,
                 every: float | None = None, verbose: int | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = None if total is None else int(total)
        self.label, self.unit = label, unit
        # Module constants read now, not at import: a caller (or a test) may change them.
        self.after = SHOW_AFTER_SECONDS if after is None else float(after)
        self.every = PROGRESS_SECONDS if every is None else float(every)
        self.stream: TextIO = sys.stderr if stream is None else stream
        depth = getattr(_STATE, "depth", 0)
        # An inner step of a reporting step stays silent: two live bars would overwrite each other.
        if depth or getattr(_STATE, "quiet", False):
            self.verbose = 0
        else:
            self.verbose = progress_verbosity(self.stream) if verbose is None else int(verbose)
        _STATE.depth = depth + 1
        self.done = 0
        self.shown = False
        self._clock = clock
        self.started = self._last_line = self._last_draw = clock()
        self._bar: Any = None  # the tf_keras Progbar, made when first shown (tf_keras is imported only then)
        self._finished = False
        self._closed = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.update(self.done + n)

    def update(self, done: int) -> None:
        """``done`` units done so far."""
        self.done = int(done)
        if self.verbose == 0 or self._closed:
            return
        now = self._clock()
        if now - self.started < self.after:
            return
        if self.verbose == 1:
            complete = self.total is not None and self.done >= self.total
            if self.shown and not complete and now - self._last_draw < _REDRAW_SECONDS:
                return
            self._last_draw = now
            self._draw(finalize=complete)
        elif now - self._last_line >= self.every:
            self._last_line = now
            self._line(f"{self.label}: {self._count()}, {now - self.started:.0f} s")

    def close(self) -> None:
        """End of the step: finish the bar or write the closing line (if anything was shown)."""
        if self._closed:
            return
        self._closed = True
        _STATE.depth = max(0, getattr(_STATE, "depth", 1) - 1)
        if not self.shown:
            return
        if self.verbose == 1:
            if not self._finished:
                self._draw(finalize=True)
        else:
            self._line(f"{self.label}: {self._count()} in {self._clock() - self.started:.0f} s")

    # ---- output -----------------------------------------------------------------------------------

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done:,} {self.unit}s"
        share = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.done:,}/{self.total:,} {self.unit}s{share}"

    def _line(self, text: str) -> None:
        self.shown = True
        self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, *, finalize: bool) -> None:
        # Progbar writes to sys.stdout: point that at our stream while it draws.
        with contextlib.redirect_stdout(self.stream):
            if self._bar is None:
                self._line(self.label)
                self._bar = _progbar(self.total, self.unit, started=time.time() - (self._clock() - self.started))
            self._bar.update(self.done, finalize=finalize)
        self._finished = finalize


def _progbar(total: int | None, unit: str, *, started: float) -> Any:
    import tf_keras

    bar = tf_keras.utils.Progbar(total or None, verbose=1, unit_name=unit)  # a target of 0 breaks its arithmetic
    # Made when first shown, seconds into the step: date its start back so its ETA counts them.
    if hasattr(bar, "_start"):
        bar._start = started
    return bar


def progress(iterable: Iterable[T], total: int | None = None, label: str = "", **options: Any) -> Iterator[T]:
    """Yield ``iterable``'s items, one unit of a :class:`Progress` each (``total`` defaults to its
    length). Leaving the loop early (``break``, ``return``, an error) closes the progress."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    if total is not None and total <= 1:
        # One unit has nothing to show before it ends (and a hot single-block call stays cheap).
        yield from iterable
        return
    with Progress(total, label, **options) as bar:
        for item in iterable:
            yield item
            bar.advance()


class _CountingReader(io.RawIOBase):
    """A binary file whose reads report the position in the file to a Progress."""

    def __init__(self, raw: BinaryIO, bar: Progress) -> None:
        super().__init__()
        self._raw, self._bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)
        self._bar.update(self._raw.tell())
        return count


@contextlib.contextmanager
def reading(path: str | os.PathLike, label: str | None = None, **options: Any) -> Iterator[BinaryIO]:
    """``open(path, "rb")`` whose reads report progress in bytes of the file (for a compressed file,
    the compressed bytes: hand the handle to the decompressor). Options as :class:`Progress`."""
    path = Path(path)
    with open(path, "rb") as raw, Progress(os.path.getsize(path), label or f"reading {path.name}",
                                           unit="byte", **options) as bar:
        yield io.BufferedReader(_CountingReader(raw, bar))
