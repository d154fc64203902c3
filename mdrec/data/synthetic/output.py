"""What :func:`generate` returns (:class:`SyntheticLog`), its time split, and writing it to a
folder."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.synthetic.ceiling import ClickTruth
from mdrec.data.synthetic.config import is_real
from mdrec.errors import MdrecError
from mdrec.fileio import atomic_write_json, atomic_write_table


@dataclass(eq=False)
class SyntheticLog:
    """A generated log.

    ``frame``: one row per impression, sorted by timestamp, RangeIndex, columns :data:`COLUMNS`.
    ``meta``: JSON-serialisable summary (config, per-domain rows, CTR, Bayes AUC, overlaps, cold
    counts, click model). The remaining fields are ground truth for tests and benchmarks and are
    never written as model inputs: ``true_probability`` (float64, aligned with ``frame`` rows),
    ``catalogues`` (domain -> sorted item ids), ``cold_users`` / ``cold_items`` (ids of the users
    and items that only exist in the last 20% of time), ``truth`` (the click model and every
    impression, :class:`~mdrec.data.synthetic.ceiling.ClickTruth`: each user's expected clicks per item).
    """

    frame: pd.DataFrame
    meta: dict
    true_probability: np.ndarray | None = field(default=None, repr=False)
    catalogues: dict = field(default_factory=dict, repr=False)
    cold_users: tuple = field(default=(), repr=False)
    cold_items: tuple = field(default=(), repr=False)
    truth: ClickTruth | None = field(default=None, repr=False)  # the click model and exposures (ceiling.py)

    def split(self, valid_fraction: float = 0.1, test_fraction: float = 0.1
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Global time split: oldest rows -> train, then valid, newest -> test.

        The cuts are timestamps, so rows sharing a second never straddle two parts
        (max train ts < min valid ts <= max valid ts < min test ts); part sizes are therefore
        close to, not exactly, the requested fractions. The parts keep the frame's index, so
        ``log.true_probability[part.index]`` lines up.
        """
        return time_split(self.frame, valid_fraction, test_fraction)


def time_split(frame: pd.DataFrame, valid_fraction: float = 0.1, test_fraction: float = 0.1
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a timestamp-sorted frame at two timestamps (see :meth:`SyntheticLog.split`)."""
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not is_real(value) or not 0.0 <= float(value) < 1.0:
            raise MdrecError(f"{name} must be a number in [0, 1) (got {value!r})")
    if valid_fraction + test_fraction >= 1.0:
        raise MdrecError(f"valid_fraction + test_fraction must be < 1 (got "
                         f"{valid_fraction + test_fraction:g})", hint="leave rows for training")
    ts = frame["timestamp"].to_numpy()
    if len(ts) and np.any(np.diff(ts) < 0):
        raise MdrecError("frame is not sorted by timestamp", column="timestamp",
                         hint="sort it with frame.sort_values('timestamp', kind='stable')")
    n = len(ts)

    def cut(fraction_before: float) -> int:
        pos = int(round(n * fraction_before))
        if pos >= n:
            return n
        return int(np.searchsorted(ts, ts[pos], side="left"))  # move back to the first row of that second

    a = cut(1.0 - valid_fraction - test_fraction)
    b = max(a, cut(1.0 - test_fraction))
    return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]


def write(log: SyntheticLog, out_dir, *, fmt: str = "parquet", valid_fraction: float = 0.1,
          test_fraction: float = 0.1, line_files: bool = False) -> dict[str, Path]:
    """Write ``log.<fmt>``, ``train/valid/test.<fmt>`` (time split) and ``meta.json``; with
    ``line_files`` also ``lines/<line>/train/valid/test.<fmt>`` per business line.

    Each file is written to a temporary name in ``out_dir`` and renamed into place, so a reader
    never sees half a file. ``meta.json`` is ``log.meta`` plus the split's row counts and cut
    timestamps. Returns {"log", "train", "valid", "test", "meta"} -> path.
    """
    if fmt not in ("parquet", "csv"):
        raise MdrecError(f"unknown format {fmt!r}", hint="use fmt='parquet' or fmt='csv'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, valid, test = log.split(valid_fraction, test_fraction)
    paths: dict[str, Path] = {}
    for name, part in (("log", log.frame), ("train", train), ("valid", valid), ("test", test)):
        paths[name] = atomic_write_table(part, out / f"{name}.{fmt}", fmt)
    meta = dict(log.meta)
    meta["split"] = {
        "valid_fraction": float(valid_fraction), "test_fraction": float(test_fraction),
        "rows": {"train": len(train), "valid": len(valid), "test": len(test)},
        "valid_start_timestamp": int(valid["timestamp"].iloc[0]) if len(valid) else None,
        "test_start_timestamp": int(test["timestamp"].iloc[0]) if len(test) else None,
    }
    meta["files"] = {name: path.name for name, path in paths.items()}
    if line_files:
        # lines/<line>/{train,valid,test}: one business line alone, the same time split (a target
        # line for `mdrec transfer`, or a per-line model).
        for line in sorted(log.frame["domain"].unique()):
            for name, part in (("train", train), ("valid", valid), ("test", test)):
                key = f"{line}/{name}"
                paths[key] = atomic_write_table(part[part["domain"] == line], out / "lines" / line / f"{name}.{fmt}", fmt)
                meta["files"][key] = str(paths[key].relative_to(out))
    paths["meta"] = atomic_write_json(out / "meta.json", meta)
    return paths
