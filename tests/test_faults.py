"""Fault injection: the probes of a careful user (bad bytes, truncated files, a log swapped under a
resumable run, runs and writers killed mid-way) each get one clear error or a clean recovery."""
from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from mdrec.cli import main
from mdrec.data.io import read_file
from mdrec.data.log import load_log
from mdrec.errors import MdrecError
from mdrec.export.served import checked_inputs
from mdrec.export.versions import staged_version, versions
from mdrec.fileio import atomic_directory, writer_mark
from mdrec.lifelong.tasks import parse_tasks
from mdrec.spec import load_spec
from mdrec.workflows.evaluate import evaluate_run
from mdrec.workflows.train import train_run
from conftest import Crashed, crash_at, tiny_config, tiny_frame

QUIET = lambda *_: None  # noqa: E731


def _config(paths, **overrides):
    return tiny_config(paths, **{"epochs": 2, "hyperparameters": {"hidden": [8], "dropout": 0.0, "embeddings_l2": 0.0},
                                 **overrides})


# ---------------------------------------------------------------------------------------------
# resumable runs and changed inputs
# ---------------------------------------------------------------------------------------------
def test_a_killed_run_refuses_to_resume_on_a_swapped_log_or_spec(tmp_path, tiny_spec_path, tiny_splits, capsys):
    # 420 rows / 32 = 14 batches an epoch: killed in epoch 2, after epoch 1's best/ was written.
    with pytest.raises(Crashed):
        train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "run", log=QUIET, on_batch=crash_at(18))
    assert (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "metrics.json").exists()

    # The run is unfinished: evaluating it would score an early epoch's weights as the result.
    with pytest.raises(MdrecError, match=r"no metrics.json yet .*finish it with the same `mdrec train`"):
        evaluate_run(tmp_path / "run", tiny_splits["test"])

    # Another log at the same path: resuming would train it with the old vocabularies.
    tiny_frame(420, seed=7).to_csv(tiny_splits["train"], index=False)
    argv = ["train", "--spec", str(tiny_spec_path), "--train", str(tiny_splits["train"]), "--valid",
            str(tiny_splits["valid"]), "--test", str(tiny_splits["test"]), "--model", "shared_bottom",
            "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "32", "--learning-rate", "5e-3",
            "--patience", "5", "--checkpoint-every", "4", "--hidden", "8", "--dropout", "0",
            "--embeddings-l2", "0"]
    with pytest.raises(MdrecError, match=r"changed: the train data \(.*train.csv\)\); it will not resume"):
        train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "run", log=QUIET)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the train data" in err and "--overwrite" in err and "Traceback" not in err

    # An edited spec is refused the same way (vocabularies and widths come from it).
    tiny_spec_path.write_text(tiny_spec_path.read_text().replace("embedding_dim: 2}", "embedding_dim: 3}", 1))
    with pytest.raises(MdrecError, match=r"the spec file \(.*tiny.yaml\)"):
        train_run(tiny_spec_path, _config(tiny_splits), tmp_path / "run", log=QUIET)

    # --overwrite starts over on the new inputs and finishes.
    metrics = train_run(tiny_spec_path, _config(tiny_splits, epochs=1), tmp_path / "run", overwrite=True, log=QUIET)
    assert metrics["tables"]["test"]


def test_a_checkpoint_of_another_model_is_refused_with_a_fix_that_works(tmp_path, tiny_spec_path, tiny_splits):
    # Two killed runs; the first's checkpoints are swapped for the second's (another model).
    for name, model in (("run", "shared_bottom"), ("other", "star")):
        with pytest.raises(Crashed):
            train_run(tiny_spec_path, _config(tiny_splits, model=model), tmp_path / name, log=QUIET,
                      on_batch=crash_at(6))
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    shutil.copytree(tmp_path / "other" / "checkpoints", tmp_path / "run" / "checkpoints")
    # The configuration is unchanged, so --overwrite would resume again: the hint must not offer it.
    with pytest.raises(MdrecError, match="does not fit the model") as refused:
        train_run(tiny_spec_path, _config(tiny_splits, model="shared_bottom"), tmp_path / "run", overwrite=True,
                  log=QUIET)
    assert "--overwrite" not in refused.value.hint and str(tmp_path / "run") in refused.value.hint
    shutil.rmtree(tmp_path / "run")   # the fix the hint names
    assert train_run(tiny_spec_path, _config(tiny_splits, model="shared_bottom", epochs=1), tmp_path / "run",
                     log=QUIET)["tables"]["test"]


# ---------------------------------------------------------------------------------------------
# bad bytes in the files a user hands over
# ---------------------------------------------------------------------------------------------
def test_truncated_gzip_is_one_error_not_a_traceback(tmp_path, tiny_spec_path, capsys):
    path = tmp_path / "train.csv.gz"
    with gzip.open(path, "wt") as handle:
        tiny_frame(3000).to_csv(handle, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MdrecError, match=r"train.csv.gz: is truncated or damaged .*download the file again"):
        load_log(path, load_spec(tiny_spec_path))
    assert main(["spec", "check", str(tiny_spec_path), "--data", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_non_utf8_files_name_their_first_bad_line(tmp_path):
    frame = tiny_frame(20)
    frame.loc[6, "title"] = "Café"
    csv = tmp_path / "latin1.csv"
    csv.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    # Line 8 of the file: the header, then data rows 1-7.
    with pytest.raises(MdrecError, match=r"latin1.csv: is not UTF-8 text at line 8 .*iconv"):
        read_file(csv)

    spec = tmp_path / "spec.yaml"
    spec.write_bytes("name: tiny\n# Straße\nlabel: {column: click}\n".encode("latin-1"))
    with pytest.raises(MdrecError, match=r"spec.yaml: is not UTF-8 text at line 2"):
        load_spec(spec)
    tasks = tmp_path / "tasks.yaml"
    tasks.write_bytes("tasks:\n  - name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(MdrecError, match=r"tasks.yaml: is not UTF-8 text at line 2"):
        parse_tasks(tasks)


def test_two_columns_of_one_name_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("user_id,item_id,click,item_id\nu1,i1,1,i2\n")
    with pytest.raises(MdrecError, match=r"two columns are named 'item_id' \(the second is column 4\)"):
        read_file(path)
    parquet = tmp_path / "fine.parquet"
    pd.DataFrame({"item_id": ["i1"], "item_id.1": ["i2"]}).to_parquet(parquet)  # distinct names are fine
    assert list(read_file(parquet).columns) == ["item_id", "item_id.1"]


def test_a_bad_timestamp_is_blamed_on_its_own_row(tmp_path, tiny_spec_path):
    frame = tiny_frame(30)
    frame["ts"] = (1_700_000_000 + frame.index).astype(str)
    frame.loc[11, "ts"] = "17000x0068"
    frame.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(MdrecError, match=r"column 'ts', row 12: '17000x0068' is neither unix seconds nor a date-time \(the rest"):
        load_log(tmp_path / "log.csv", load_spec(tiny_spec_path))


def test_a_line_seen_a_few_times_is_flagged_as_a_likely_typo(tmp_path, tiny_spec_path, tiny_splits):
    frame = pd.read_csv(tiny_splits["train"])
    frame.loc[3, "domain"] = "aa"
    frame.to_csv(tiny_splits["train"], index=False)
    messages = []
    train_run(tiny_spec_path, _config(tiny_splits, epochs=1, test=None), tmp_path / "run", log=messages.append)
    warnings = [m for m in messages if m.startswith("warning: line")]
    assert len(warnings) == 1 and "'aa' has only 1 row(s)" in warnings[0] and "a typo of 'a'?" in warnings[0]


# ---------------------------------------------------------------------------------------------
# writers killed mid-way (kill -9 of a child process)
# ---------------------------------------------------------------------------------------------
def _killed_child(code: str) -> None:
    """Run ``code`` in a child Python that SIGKILLs itself inside the write; wait for it."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_writer_killed_inside_a_folder_write_leaves_the_old_folder_and_its_leftover_is_swept(tmp_path):
    target = tmp_path / "best"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("epoch 1")
    _killed_child(f"""
        import os, signal
        from mdrec.fileio import atomic_directory, writer_mark
        with atomic_directory({str(target)!r}) as tmp:
            (tmp / "weights").write_text("epoch 2, half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".best.")]
    assert (target / "weights").read_text() == "epoch 1" and len(leftovers) == 1
    # A live writer's folder must survive the sweep; the dead one's goes.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".best.{writer_mark(live.pid)}-inprogress.tmp").mkdir()
        (tmp_path / f".best.pid{live.pid + 1}h00000000-elsewhere.tmp").mkdir()   # another host's: never judged
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("epoch 3")
        names = {p.name for p in tmp_path.iterdir()}
        assert names == {"best", f".best.{writer_mark(live.pid)}-inprogress.tmp",
                         f".best.pid{live.pid + 1}h00000000-elsewhere.tmp"}
    finally:
        live.kill()
        live.wait()
    assert (target / "weights").read_text() == "epoch 3"


def test_a_kill_between_the_two_renames_puts_the_previous_folder_back(tmp_path):
    target = tmp_path / "checkpoints"
    with atomic_directory(target) as tmp:
        (tmp / "state").write_text("good")
    os.replace(target, tmp_path / ".checkpoints.old")  # the state right after the first rename
    with atomic_directory(target) as tmp:
        assert (target / "state").read_text() == "good"  # recovered before the new write
        (tmp / "state").write_text("newer")
    assert (target / "state").read_text() == "newer" and not (tmp_path / ".checkpoints.old").exists()


def test_an_export_killed_mid_way_publishes_nothing_and_the_next_export_sweeps_it(tmp_path):
    model_dir = tmp_path / "export" / "ctr"
    _killed_child(f"""
        import os, signal
        from mdrec.export.versions import staged_version
        with staged_version({str(model_dir)!r}, 1) as tmp:
            (tmp / "saved_model.pb").write_bytes(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert versions(model_dir) == [] and [p.name[:10] for p in model_dir.iterdir()] == [".tmp-1-pid"]
    with staged_version(model_dir, 1) as tmp:
        (tmp / "saved_model.pb").write_bytes(b"y")
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]


def test_two_exports_racing_for_one_version_publish_one_and_the_loser_says_so(tmp_path):
    model_dir = tmp_path / "export" / "ctr"
    with pytest.raises(MdrecError, match="version 1 appeared while exporting .*export again"):
        with staged_version(model_dir, 1) as mine:
            (mine / "saved_model.pb").write_bytes(b"mine")
            # Another export publishes version 1 between this one's free check and its rename.
            with staged_version(model_dir, 1) as theirs:
                (theirs / "saved_model.pb").write_bytes(b"theirs")
    # The winner's version is intact and the loser left nothing behind.
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]
    assert (model_dir / "1" / "saved_model.pb").read_bytes() == b"theirs"


def test_an_ab_report_folder_is_replaced_whole_and_never_over_other_files(tmp_path):
    from mdrec.workflows.ab_report import write_report

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "notes.txt").write_text("mine")
    with pytest.raises(MdrecError, match=r"holds files that are not an A/B report \(notes.txt\)"):
        write_report(None, mixed)   # refused before any work: the result is never read
    assert [p.name for p in mixed.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------------------------
# serving: values training would refuse are refused, naming the input
# ---------------------------------------------------------------------------------------------
def test_the_serving_signature_refuses_values_training_refuses(tmp_path, tiny_spec_path, tiny_splits):
    import numpy as np
    import tensorflow as tf

    from conftest import reload_and_serve

    train_run(tiny_spec_path, _config(tiny_splits, epochs=1), tmp_path / "run", log=QUIET)
    inputs, expected, served, got = reload_and_serve(tmp_path / "run", tiny_splits["test"], tmp_path)
    np.testing.assert_allclose(got["probability"].numpy(), expected, rtol=1e-5, atol=1e-6)  # valid rows pass

    def serve_with(name, value):
        changed = np.array(inputs[name], dtype=np.float32, copy=True)
        changed.reshape(len(changed), -1)[0, -1] = value      # row 0, last value
        return served(**{k: tf.constant(changed if k == name else v) for k, v in inputs.items()})

    for name, value in (("price", np.inf), ("price", 1e30), ("price", -1e30), ("vec", np.nan), ("vec", -np.inf)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"input {name} needs values that are finite"):
            serve_with(name, value)
    # A nullable numeric feature's NaN means missing, as in training (the training mean stands in).
    assert np.isfinite(serve_with("price", np.nan)["probability"].numpy()).all()
    # The saved signature's [None, width] shapes are not enforced when it is called: checked in the graph.
    for name in ("vec", "item_id_history"):
        wide = {k: tf.constant(v) for k, v in inputs.items()}
        wide[name] = tf.constant(np.concatenate([inputs[name], inputs[name][:, :1]], 1))
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"input {name} needs (3|5) values per row"):
            served(**wide)

    # A wrong dtype is refused before the graph runs, where TensorFlow names it by position only
    # ("input #8(zero-based)"): ServedModel's check names it, and converts numbers as REST does.
    n = len(inputs["price"])
    bad = {"price": np.asarray(["1.0"] * n), "user_id": np.arange(n), "vec": np.zeros(n, np.float32)}
    for name, message in (("price", r"input price needs number values \(float32\); got string values"),
                          ("user_id", r"input user_id needs string values \(string\); got integer values"),
                          ("vec", r"input vec needs shape \[batch, 3\]; got \[" + str(n) + r"\]")):
        with pytest.raises(MdrecError, match=message):
            checked_inputs(served, {**inputs, name: bad[name]})
    with pytest.raises(MdrecError, match="input\\(s\\) pricee are not inputs of signature"):
        checked_inputs(served, {**inputs, "pricee": inputs["price"]})
    with pytest.raises(MdrecError, match="needs input\\(s\\) price —"):
        checked_inputs(served, {k: v for k, v in inputs.items() if k != "price"})
    widened = checked_inputs(served, {**inputs, "price": inputs["price"].astype(np.float64)})
    np.testing.assert_array_equal(served(**widened)["probability"].numpy(), got["probability"].numpy())


def test_an_overlong_id_or_text_is_refused_with_its_row(tmp_path, tiny_spec_path):
    from mdrec.data.log import MAX_ID_CHARS, MAX_TEXT_CHARS

    spec = load_spec(tiny_spec_path)
    for column, length, limit in (("item_id", MAX_ID_CHARS + 1, "1,000"), ("title", MAX_TEXT_CHARS + 1, "100,000")):
        frame = tiny_frame(10)
        frame.loc[4, column] = "x" * length
        frame.to_csv(tmp_path / "log.csv", index=False)
        with pytest.raises(MdrecError, match=rf"column '{column}', row 5: value of {length:,} characters .* is {limit}\)"):
            load_log(tmp_path / "log.csv", spec)
    frame = tiny_frame(10)
    frame.loc[4, "item_id"] = "x" * MAX_ID_CHARS      # at the limit: accepted
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert load_log(tmp_path / "log.csv", spec).frame["item_id"][4] == "x" * MAX_ID_CHARS


def test_a_published_folder_gets_the_umask_mode_not_the_temp_folder_s(tmp_path):
    # A report or an export is read by other users (a web server, TF Serving): not 0700 as mkdtemp makes it.
    before = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "report") as tmp:
            (tmp / "report.md").write_text("x")
    finally:
        os.umask(before)
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o755
