"""Self-contained HTML report pages and the report folders they are written in.

A page is one file: tables as HTML, plots embedded as base64 PNG (``<img src="data:image/png;
base64,...">``), so it can be mailed or attached to a ticket without its folder. A report folder
(report.md, report.html and the report's data files) is written as a whole: a temporary sibling
folder renamed into place, so a dashboard watching it never reads one report's markdown beside
another's plots. Used by the A/B report, ``mdrec compare --report`` and the transfer reports.
"""
from __future__ import annotations

import base64
import contextlib
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import pandas as pd

from mdrec.errors import MdrecError
from mdrec.fileio import atomic_directory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
          "table.t{border-collapse:collapse;font-size:13px;margin:1em 0}"
          "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
          "img{max-width:100%}.legend{font-size:12px;color:#555}")


# --------------------------------------------------------------------------------------------
# the report folder
# --------------------------------------------------------------------------------------------
def check_report_folder(out: str | Path, names: Iterable[str], what: str) -> None:
    """Refuse ``out`` when it is a folder holding files other than ``names``.

    The folder is replaced as a whole, so anything else in it would be lost. Cheap: callers run it
    before the work that fills the report. ``what`` names the report in the message
    ("an A/B report", "a compare report").
    """
    out = Path(out)
    if not out.is_dir():
        return
    keep = set(names)
    other = sorted(p.name for p in out.iterdir() if p.name not in keep)
    if other:
        raise MdrecError(f"holds files that are not {what} ({', '.join(other[:5])}); the report folder "
                         "is replaced as a whole", path=str(out), hint="pass a folder of its own, e.g. reports/NAME")


@contextlib.contextmanager
def report_folder(out: str | Path, names: Iterable[str], what: str) -> Iterator[Path]:
    """Yield a temporary folder to write ``names`` into; on success it becomes ``out`` whole.

    ``out`` is checked first (:func:`check_report_folder`); on an exception ``out`` is left as it was.
    """
    check_report_folder(out, names, what)
    with atomic_directory(out) as tmp:
        yield tmp


# --------------------------------------------------------------------------------------------
# page pieces
# --------------------------------------------------------------------------------------------
def figure_png(figure: "Figure") -> str:
    """A matplotlib figure (object API, no pyplot) as base64 PNG text for an ``<img>`` tag."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def html_table(table: pd.DataFrame) -> str:
    """A DataFrame as an HTML table (floats to 4 decimals, missing values as "-")."""
    return table.to_html(na_rep="-", float_format=lambda v: f"{v:.4f}", border=0, classes="t")


def html_figures(figures: dict[str, str]) -> list[str]:
    """One ``<h2>`` heading and ``<img>`` per plot: title -> base64 PNG (:func:`figure_png`)."""
    esc = html.escape
    body = []
    for title, png in figures.items():
        body += [f"<h2>{esc(title)}</h2>", f"<img alt='{esc(title)}' src='data:image/png;base64,{png}'>"]
    return body


def html_list(items: Iterable[str], *, css: str | None = None) -> list[str]:
    """A ``<ul>`` of plain-text items (escaped)."""
    opening = f"<ul class='{css}'>" if css else "<ul>"
    return [opening] + [f"<li>{html.escape(item)}</li>" for item in items] + ["</ul>"]


def html_page(title: str, body: Iterable[str]) -> str:
    """The page around ``body`` (HTML fragments, in order): one file, the style inline."""
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
