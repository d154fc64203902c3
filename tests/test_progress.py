"""Progress of long steps outside training (mdrec.progress): silent for short steps and under
quiet_progress(), lines (or a live bar) on stderr when forced, never on stdout, counts right; and
the long loops that use it (bootstrap resamples, reading a raw log) report through it."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mdrec import progress as P
from mdrec.progress import Progress, progress, progress_verbosity, quiet_progress, reading


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_forced_lines_count_every_item_and_close_with_the_total():
    out = io.StringIO()
    items = list(progress(["a", "b", "c"], label="step", unit="item", after=0, every=0, verbose=2, stream=out))
    assert items == ["a", "b", "c"]
    assert lines(out)[:3] == [f"step: {n}/3 items ({round(100 * n / 3)}%), 0 s" for n in (1, 2, 3)]
    assert lines(out)[3] == "step: 3/3 items (100%) in 0 s"
    assert len(lines(out)) == 4


def test_unknown_total_and_an_early_exit_count_what_was_done():
    out = io.StringIO()
    for n in progress((i for i in range(10)), label="gen", after=0, every=1e9, verbose=2, stream=out):
        if n == 3:
            break
    assert lines(out) == []  # no line before `every` seconds, so no closing line either
    out = io.StringIO()
    for n in progress((i for i in range(10)), label="gen", after=0, every=0, verbose=2, stream=out):
        if n == 3:
            break
    assert lines(out)[-1] == "gen: 3 steps in 0 s"  # left after 3 finished items (no total: no share)


def test_short_steps_and_quiet_blocks_print_nothing():
    out = io.StringIO()
    for _ in progress(range(50), label="short", after=60, every=0, verbose=2, stream=out):
        pass
    assert out.getvalue() == ""
    with quiet_progress():
        assert progress_verbosity(Terminal()) == 0
        for _ in progress(range(5), label="quiet", after=0, every=0, verbose=2, stream=out):
            pass
    assert out.getvalue() == ""
    assert progress_verbosity(Terminal()) == 1 and progress_verbosity(io.StringIO()) == 2


def test_lines_are_rate_limited_by_the_clock():
    out, clock = io.StringIO(), FakeClock()
    with Progress(100, "slow", unit="row", after=5, every=10, verbose=2, stream=out, clock=clock) as bar:
        for done in range(1, 101):
            clock.now += 0.5  # 50 s in all: lines at 10, 20, 30, 40, 50 s
            bar.update(done)
    assert [line.split(", ")[-1] for line in lines(out)[:-1]] == ["10 s", "20 s", "30 s", "40 s", "50 s"]
    assert lines(out)[0] == "slow: 20/100 rows (20%), 10 s"
    assert lines(out)[-1] == "slow: 100/100 rows (100%) in 50 s"


def test_a_nested_step_stays_silent():
    out = io.StringIO()
    for _ in progress(range(2), label="outer", after=0, every=0, verbose=2, stream=out):
        for _ in progress(range(3), label="inner", after=0, every=0, verbose=2, stream=out):
            pass
    assert lines(out) and all(line.startswith("outer: ") for line in lines(out))
    for _ in progress(range(2), label="after", after=0, every=0, verbose=2, stream=out):
        pass  # the outer one closed: a later step reports again
    assert lines(out)[-1] == "after: 2/2 steps (100%) in 0 s"
    shown = len(lines(out))
    for _ in progress(range(1), label="one", after=0, every=0, verbose=2, stream=out):
        pass  # a single unit has nothing to show before it ends
    assert len(lines(out)) == shown


def test_live_bar_goes_to_its_stream_not_stdout(capsys):
    out = Terminal()
    for _ in progress(range(4), label="bar step", unit="item", after=0, stream=out):  # a terminal: verbose 1
        pass
    text = out.getvalue()
    assert text.startswith("bar step\n") and "4/4 [" in text and text.endswith("\n")
    assert capsys.readouterr().out == ""


def test_reading_reports_the_bytes_of_the_file(tmp_path):
    path = tmp_path / "t.tsv"
    pd.DataFrame({"a": range(2000), "b": ["x"] * 2000}).to_csv(path, sep="\t", index=False)
    out = io.StringIO()
    with reading(path, after=0, every=0, verbose=2, stream=out) as handle:
        frame = pd.read_csv(handle, sep="\t")
    assert len(frame) == 2000
    size = path.stat().st_size
    assert lines(out)[0].startswith("reading t.tsv: ")
    assert lines(out)[-1].startswith(f"reading t.tsv: {size:,}/{size:,} bytes (100%) in ")


@pytest.fixture
def forced(monkeypatch):
    """Every Progress with default timings shows at once, a line per update."""
    monkeypatch.setattr(P, "SHOW_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(P, "PROGRESS_SECONDS", 0.0)


def test_bootstrap_resamples_report_on_stderr_only(forced, capsys):
    from mdrec.evaluation import stats

    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random(n) < 0.3).astype(float)
    a, b = rng.random(n), rng.random(n)
    stats.paired_user_bootstrap(y, a, b, rng.integers(0, 50, n), {"ALL": np.ones(n, bool)}, n_bootstrap=40,
                                max_elements=10 * n)  # chunks of 10 replicates (of n rows each)
    captured = capsys.readouterr()
    assert captured.out == ""
    reported = [line for line in captured.err.splitlines() if line.startswith("paired user bootstrap")]
    assert [line.split(": ")[1].split(" (")[0] for line in reported] == [
        "10/40 resamples", "20/40 resamples", "30/40 resamples", "40/40 resamples", "40/40 resamples"]
    assert reported[-1].endswith("40/40 resamples (100%) in 0 s")  # the closing line


def test_prepare_reports_reading_and_writing(forced, tmp_path, capsys):
    from mdrec.data.prepare import prepare
    from test_prepare import douban_source

    prepare("douban-book-music", douban_source(tmp_path), tmp_path / "out")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "reading douban_book_ratings.dat.gz: " in captured.err
    assert "writing log.parquet, train.parquet, valid.parquet, test.parquet: 4/4 tables (100%)" in captured.err
