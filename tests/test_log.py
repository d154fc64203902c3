"""Bad input gives one clear error naming the file, the column and the first bad row."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_frame
from mdrec.cli import main
from mdrec.data.log import DOMAIN, LABEL, TIME, load_log
from mdrec.errors import MdrecError
from mdrec.spec import load_spec


def _write(tmp_path, frame, name="log.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


def test_valid_log_in_canonical_form(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    frame = tiny_frame(50)
    frame.loc[3, "city"] = None
    frame.loc[4, "price"] = None
    for name in ("log.csv", "log.tsv", "log.parquet"):
        log = load_log(_write(tmp_path, frame, name), spec)
        assert len(log) == 50
        assert log.frame[LABEL].tolist() == frame["click"].tolist()
        assert log.frame[TIME].dtype == np.int64
        assert log.frame[DOMAIN].tolist() == frame["domain"].tolist()
        assert log.dense["vec"].shape == (50, 3)
        assert log.missing == {"city": 1, "price": 1}      # counted, not dropped
        assert log.frame.loc[3, "city"] == "" and np.isnan(log.frame.loc[4, "price"])


def test_folder_of_shards(tmp_path, tiny_spec_path):
    frame = tiny_frame(60)
    (tmp_path / "shards").mkdir()
    _write(tmp_path / "shards", frame.iloc[:30], "part-0.csv")
    _write(tmp_path / "shards", frame.iloc[30:], "part-1.parquet")
    log = load_log(tmp_path / "shards", load_spec(tiny_spec_path))
    assert len(log) == 60 and log.frame["user_id"].tolist() == frame["user_id"].tolist()


def test_label_rule_and_integral_ids(tmp_path):
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("name: r\nlabel: {column: rating, positive_if: '>= 4'}\nfeatures:\n"
                         "  - {name: user_id, role: user_id, type: categorical}\n"
                         "  - {name: item_id, role: item_id, type: categorical}\n")
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10.0, 11.0, 12.0], "rating": [5, 3, 4]})
    log = load_log(_write(tmp_path, frame, "r.parquet"), load_spec(spec_path))
    assert log.frame[LABEL].tolist() == [1, 0, 1]
    assert log.frame["item_id"].tolist() == ["10", "11", "12"]   # not "10.0"
    assert set(log.frame[DOMAIN]) == {"all"}                    # no domain column: one domain


@pytest.mark.parametrize("mutate, fragments", [
    (lambda f: f.drop(columns=["price"]), ["missing column(s) 'price'", "the file has"]),
    (lambda f: f.assign(price=f["price"].astype(str).where(f.index != 6, "cheap")),
     ["column 'price', row 7", "'cheap' is not a number"]),
    (lambda f: f.assign(click=f["click"].where(f.index != 2, 2)), ["column 'click', row 3", "not 0 or 1"]),
    (lambda f: f.assign(click=f["click"].astype(object).where(f.index != 4, None)),
     ["column 'click', row 5", "missing label"]),
    (lambda f: f.assign(user_id=f["user_id"].where(f.index != 8, None)),
     ["column 'user_id', row 9", "not nullable"]),
    (lambda f: f.assign(vec=f["vec"].where(f.index != 1, "1 2")), ["column 'vec', row 2", "has 2 values", "dim 3"]),
    (lambda f: f.assign(vec=f["vec"].where(f.index != 1, "1 x 2")), ["column 'vec', row 2", "not a number"]),
    (lambda f: f.assign(ts=f["ts"].astype(str).where(f.index != 0, "yesterday-ish")),
     ["column 'ts', row 1", "neither unix seconds nor a date-time"]),
])
def test_bad_values(tmp_path, tiny_spec_path, mutate, fragments):
    path = _write(tmp_path, mutate(tiny_frame(20)))
    with pytest.raises(MdrecError) as info:
        load_log(path, load_spec(tiny_spec_path))
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


def test_empty_and_header_only_files(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MdrecError, match="empty.csv: file is empty"):
        load_log(empty, spec)
    header = tmp_path / "header.csv"
    header.write_text(",".join(tiny_frame(1).columns) + "\n")
    with pytest.raises(MdrecError, match="header.csv: file has a header but no data rows"):
        load_log(header, spec)
    with pytest.raises(MdrecError, match="data file not found"):
        load_log(tmp_path / "nope.csv", spec)
    weird = tmp_path / "log.xlsx"
    weird.write_text("x")
    with pytest.raises(MdrecError, match="unknown file type"):
        load_log(weird, spec)


def test_unknown_domain_at_evaluation(tmp_path, tiny_spec_path):
    frame = tiny_frame(20)
    frame.loc[5, "domain"] = "grocery"
    with pytest.raises(MdrecError, match=r"column 'domain', row 6: unknown domain 'grocery'"):
        load_log(_write(tmp_path, frame), load_spec(tiny_spec_path), known_domains=["a", "b", "c"])


def test_cli_reports_bad_input_without_traceback(tmp_path, tiny_spec_path, capsys):
    path = _write(tmp_path, tiny_frame(20).drop(columns=["title"]))
    code = main(["spec", "check", str(tiny_spec_path), "--data", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mdrec: error: ") and "'title'" in err and "Traceback" not in err


def test_cli_process_exit_code(tmp_path, tiny_spec_path):
    path = _write(tmp_path, tiny_frame(20).assign(click=3))
    result = subprocess.run([sys.executable, "-m", "mdrec.cli", "spec", "check", str(tiny_spec_path),
                             "--data", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not 0 or 1" in result.stderr and "Traceback" not in result.stderr


def test_spec_check_summary(tmp_path, tiny_spec_path, capsys):
    frame = tiny_frame(300)
    assert main(["spec", "check", str(tiny_spec_path), "--data", str(_write(tmp_path, frame)), "--json"]) == 0
    import json

    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["rows"] == 300 and summary["users"] == frame["user_id"].nunique()
    by_domain = {d["domain"]: d for d in summary["domains"]}
    assert by_domain["a"]["label_rate"] == pytest.approx(frame.loc[frame.domain == "a", "click"].mean())
    shared_ab = len(set(frame.user_id[frame.domain == "a"]) & set(frame.user_id[frame.domain == "b"]))
    assert summary["user_overlap"]["a"]["b"] == shared_ab


def test_a_parsed_log_is_kept_by_contents_and_handed_out_as_copies(tmp_path, tiny_spec_path):
    from mdrec.data import log as log_module
    from mdrec.data.parsed_logs import ParsedLogs

    spec = load_spec(tiny_spec_path)
    frame = tiny_frame(40)
    path = _write(tmp_path, frame, "log.csv")
    calls = []
    parse = log_module.canonicalize

    def counting(*args, **kwargs):
        calls.append(kwargs.get("source"))
        return parse(*args, **kwargs)

    log_module.PARSED, kept = ParsedLogs(), log_module.PARSED
    log_module.canonicalize = counting
    try:
        first = load_log(path, spec)
        first.frame.loc[0, LABEL] = 1 - first.frame.loc[0, LABEL]   # a caller's change stays its own
        first.dense["vec"][:] = 7.0
        again = load_log(path, spec)
        assert len(calls) == 1
        assert again.frame[LABEL].tolist() == frame["click"].tolist() and not (again.dense["vec"] == 7.0).any()
        # The same size, new contents (a label flipped in place): parsed again.
        flipped = frame.assign(click=1 - frame["click"])
        path.write_text(flipped.to_csv(index=False))
        assert load_log(path, spec).frame[LABEL].tolist() == flipped["click"].tolist() and len(calls) == 2
        # Other lines allowed: parsed again, and the file's bad row is still reported.
        with pytest.raises(MdrecError, match="unknown domain"):
            load_log(path, spec, known_domains=["nowhere"])
    finally:
        log_module.canonicalize, log_module.PARSED = parse, kept


@pytest.mark.parametrize("separator, texts", [
    (None, ["0.1 2 -3e-1", "  4\t5   6 ", None, "7 8 9"]),      # runs of whitespace, as str.split()
    (",", ["0.1,2,-3e-1", "4,5,6", None, "7,8,9"]),
])
def test_vectors_read_to_the_bit_with_missing_rows_zero(tmp_path, separator, texts):
    # The vectorised parse must give the float32 that float(text) rounds to, as the row-by-row one does.
    vec = "{name: vec, role: item, type: dense_vector, dim: 3" + (f", separator: '{separator}'" if separator else "")
    spec_path = tmp_path / "v.yaml"
    spec_path.write_text("name: v\nlabel: {column: click}\nfeatures:\n"
                         "  - {name: user_id, role: user_id, type: categorical}\n"
                         "  - {name: item_id, role: item_id, type: categorical}\n"
                         f"  - {vec}, nullable: true}}\n")
    frame = pd.DataFrame({"user_id": list("abcd"), "item_id": list("wxyz"), "click": [1, 0, 1, 0], "vec": texts})
    log = load_log(_write(tmp_path, frame, "v.parquet"), load_spec(spec_path))
    expected = np.array([[0.1, 2, -0.3], [4, 5, 6], [0, 0, 0], [7, 8, 9]], np.float64).astype(np.float32)
    assert log.dense["vec"].dtype == np.float32 and log.dense["vec"].tobytes() == expected.tobytes()
    assert log.missing == {"vec": 1}


def test_vectors_given_as_lists(tmp_path, tiny_spec_path):
    frame = tiny_frame(5)
    frame["vec"] = [np.array([i, 0.5, -i], np.float32) for i in range(5)]
    log = load_log(_write(tmp_path, frame, "l.parquet"), load_spec(tiny_spec_path))
    np.testing.assert_array_equal(log.dense["vec"], [[i, 0.5, -i] for i in range(5)])


def test_an_overlong_id_is_named_by_row_counting_characters_not_bytes(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    frame = tiny_frame(10)
    frame.loc[2, "user_id"] = "é" * 1_000          # 1,000 characters (2,000 UTF-8 bytes): at the limit
    assert len(load_log(_write(tmp_path, frame, "ok.parquet"), spec)) == 10
    frame.loc[6, "user_id"] = "é" * 1_001
    with pytest.raises(MdrecError, match=r"column 'user_id', row 7: value of 1,001 characters in feature "
                                         r"'user_id' \(the limit for a categorical value is 1,000\)"):
        load_log(_write(tmp_path, frame, "long.parquet"), spec)
