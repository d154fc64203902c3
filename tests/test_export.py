"""TF Serving export: a fresh TensorFlow-only process and saved_model_cli reproduce the model, warmup
records run, versions appear atomically, bad requests fail clearly, and the serving config and REST
bodies parse back with TF Serving's own protos."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mdrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mdrec.cli import main
from mdrec.data.pipeline import model_inputs
from mdrec.data.signature import input_signature
from mdrec.errors import MdrecError
from mdrec.export import ServedModel, format_tree
from mdrec.export.serving_config import batching_parameters_class
from mdrec.export.warmup import read_warmup, request_inputs
from mdrec.spec import load_spec
from mdrec.training.inference import predict
from mdrec.training.run import TrainConfig
from mdrec.workflows.export import export_run
from mdrec.workflows.export import saved_model as saved_model_module
from mdrec.workflows.restore import evaluation_log, load_trained, restore_trained
from mdrec.workflows.train import train_run
from conftest import TINY_SPEC, write_tiny_splits

PYTHON = sys.executable
SAVED_MODEL_CLI = str(Path(sys.executable).with_name("saved_model_cli"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny STAR run (the model with fused serving weights) and its first export."""
    root = tmp_path_factory.mktemp("export")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    paths = write_tiny_splits(root)
    config = TrainConfig(model="star", train=str(paths["train"]), valid=str(paths["valid"]), test=str(paths["test"]),
                         epochs=2, batch_size=64, learning_rate=5e-3, seed=0,
                         hyperparameters={"hidden": [8], "dropout": 0.0})
    train_run(root / "tiny.yaml", config, root / "run", log=lambda *_: None)
    version = export_run(root / "run", "ctr", export_dir=root / "export")
    return {"root": root, "run": root / "run", "paths": paths, "version": version}


def _in_process(trained, split="test"):
    """(raw inputs, predictions, model) of the trained run on a split, computed in this process."""
    run, config, spec, transform, model = load_trained(trained["run"])
    log, history, _ = evaluation_log(config, spec, transform, trained["paths"][split])
    inputs = model_inputs(log, spec, history)
    restore_trained(model, run, inputs)
    return inputs, predict(model, inputs), model


def _as_bytes(inputs: dict) -> dict:
    return {k: (np.asarray(v, dtype=bytes) if v.dtype == object else v) for k, v in inputs.items()}


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def test_layout_assets_and_named_signature(trained):
    version = trained["version"]
    assert version.name == "1" and version.parent.name == "ctr"
    tree = format_tree(version.parent)
    for part in ("saved_model.pb", "variables.index", "assets/", "spec.yaml", "transform.json",
                 "metrics.json", "config.json", "export.json", "assets.extra/", "tf_serving_warmup_requests"):
        assert part in tree, tree
    info = json.loads((version / "assets" / "export.json").read_text())
    config = json.loads((trained["run"] / "config.json").read_text())
    assert info["family"] == "ctr" and info["model"] == "star" and info["version"] == 1
    assert info["data_fingerprints"] == config["data_fingerprints"]
    assert set(info["data_fingerprints"]) == {"train", "valid", "test", "spec"}
    assert (version / "assets" / "transform.json").read_text() == (trained["run"] / "transform.json").read_text()
    names = set(input_signature(load_spec(trained["run"] / "spec.yaml")))
    assert set(info["signatures"]["serving_default"]["inputs"]) == names
    assert info["signatures"]["serving_default"]["inputs"]["item_id_history"]["shape"] == [-1, 5]
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert set(served.structured_input_signature[1]) == names          # stable names, no input_1
    assert set(served.structured_outputs) == {"probability", "logit"}


def test_fresh_tensorflow_process_reproduces_predictions(trained, tmp_path):
    inputs, expected, _ = _in_process(trained)
    np.savez(tmp_path / "inputs.npz", **_as_bytes(inputs))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        serve = tf.saved_model.load({str(trained['version'])!r}).signatures["serving_default"]
        data = np.load({str(tmp_path / 'inputs.npz')!r})
        out = serve(**{{k: tf.constant(data[k]) for k in data.files}})
        np.save({str(tmp_path / 'out.npy')!r}, out["probability"].numpy())
        assert not any(m == "mdrec" or m.startswith(("mdrec.", "scann")) for m in sys.modules), "imported mdrec"
    """)
    subprocess.run([PYTHON, "-c", script], check=True, env=_clean_env(), cwd=tmp_path, timeout=120)
    got = np.load(tmp_path / "out.npy")
    assert got.shape == expected.shape == (90,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_saved_model_cli_runs_the_export(trained, tmp_path):
    inputs, expected, _ = _in_process(trained)
    rows = {k: v[:20] for k, v in _as_bytes(inputs).items()}
    np.savez(tmp_path / "rows.npz", **rows)
    spec = ";".join(f"{name}={tmp_path / 'rows.npz'}[{name}]" for name in rows)
    subprocess.run([SAVED_MODEL_CLI, "run", "--dir", str(trained["version"]), "--tag_set", "serve",
                    "--signature_def", "serving_default", "--inputs", spec, "--outdir", str(tmp_path / "out")],
                   check=True, env=_clean_env(), capture_output=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probability.npy"), expected[:20], rtol=1e-5, atol=1e-5)


def test_warmup_records_are_real_rows_that_run(trained):
    inputs, expected, _ = _in_process(trained, "valid")
    served = tf.saved_model.load(str(trained["version"])).signatures["serving_default"]
    records = list(read_warmup(trained["version"] / "assets.extra" / "tf_serving_warmup_requests"))
    assert 2 <= len(records) <= 1000
    seen: dict[int, int] = {}     # batch size -> records of that size so far
    for record in records:
        assert record.WhichOneof("log_type") == "predict_log"
        assert record.predict_log.request.model_spec.name == "ctr"
        signature, batch = request_inputs(record)
        assert signature == "serving_default" and set(batch) == set(inputs)
        out = served(**{k: tf.constant(v) for k, v in batch.items()})["probability"].numpy()
        # Records of one size are consecutive validation rows, with their behaviour sequences.
        start = seen.get(len(out), 0) * len(out)
        seen[len(out)] = seen.get(len(out), 0) + 1
        np.testing.assert_allclose(out, expected[start:start + len(out)], rtol=1e-5, atol=1e-5)
    assert set(seen) == {1, 64}


def test_interrupted_export_leaves_no_version(trained, monkeypatch):
    model_dir = trained["root"] / "export" / "ctr"
    before = sorted(os.listdir(model_dir))
    seen = []

    def crash(built, folder, name):
        seen.append((folder / "saved_model.pb").is_file())  # the SavedModel is already written
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model_module, "_write_warmup", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(trained["run"], "ctr", export_dir=trained["root"] / "export")
    assert seen == [True]
    assert sorted(os.listdir(model_dir)) == before      # no version 2, no temporary folder left


def test_poller_only_sees_complete_versions_and_keep_prunes_after(trained, tmp_path, monkeypatch):
    model_dir = tmp_path / "export" / "polled"
    snapshots, broken, hidden = [], [], set()
    at_prune = []  # the versions present, and whether complete, each time pruning starts
    real_prune = saved_model_module.prune

    def recording_prune(folder, keep, **kwargs):
        at_prune.append({int(n): (folder / n / "saved_model.pb").is_file() for n in os.listdir(folder) if n.isdigit()})
        return real_prune(folder, keep, **kwargs)

    monkeypatch.setattr(saved_model_module, "prune", recording_prune)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            if model_dir.is_dir():
                names = os.listdir(model_dir)
                hidden.update(n for n in names if n.startswith("."))
                present = sorted(int(n) for n in names if n.isdigit())
                for v in present:
                    folder = model_dir / str(v)
                    complete = (folder / "saved_model.pb").is_file() and \
                        (folder / "variables" / "variables.index").is_file()
                    if not complete and folder.exists():
                        broken.append(v)
                snapshots.append(present)
            time.sleep(0.001)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(3):
            export_run(trained["run"], "polled", export_dir=tmp_path / "export", keep=2)
    finally:
        stop.set()
        poller.join()
    assert not broken
    assert any(n.startswith(".tmp-") for n in hidden)                  # it polled during the writes
    assert [1] in snapshots and snapshots[-1] == [2, 3]
    # Pruning starts only once the new version is in place and complete (a poller thread may miss
    # that short moment on a busy machine, so it is recorded where it happens).
    assert at_prune[-1] == {1: True, 2: True, 3: True}
    # An old version went only once the new one was complete: never fewer than `keep` once there were.
    assert all(len(s) >= min(2, max(s)) for s in snapshots if s)
    assert not [n for n in os.listdir(model_dir) if n.startswith(".")]


def test_bad_requests_fail_clearly_and_unknown_ids_are_oov(trained):
    served = tf.saved_model.load(str(trained["version"])).signatures["serving_default"]
    good = {"user_id": ["u1", "nobody"], "item_id": ["i1", "zzz"], "city": ["x", "mars"],
            "tags": ["t1|t5", "new|tags"], "title": ["red thing", "never seen words"], "price": [1.0, np.nan],
            "vec": [[0.0, 0.1, 0.2]] * 2, "domain": ["a", "c"], "item_id_history": [["i2", "", "", "", ""],
                                                                                    ["unknown", "", "", "", ""]]}

    def call(**changes):
        features = {**good, **changes}
        return served(**{k: tf.constant(v) for k, v in features.items() if v is not None})

    out = call()
    assert out["probability"].shape == (2,) and np.isfinite(out["probability"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="string"):
        call(user_id=[1, 2])                                           # int for a string feature
    with pytest.raises(tf.errors.InvalidArgumentError, match="float"):
        call(price=["1.0", "2.0"])                                     # string for a float feature
    with pytest.raises(TypeError, match="city"):
        call(city=None)                                                # a missing feature
    with pytest.raises(tf.errors.InvalidArgumentError, match="different number of rows"):
        call(price=[1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="serves the domains a, b, c"):
        call(domain=["a", "mars"])
    dtypes = {k: s.dtype for k, s in served.structured_input_signature[1].items()}
    empty = served(**{k: tf.constant(np.asarray(v)[:0], dtype=dtypes[k]) for k, v in good.items()})
    assert empty["probability"].shape == (0,) and empty["logit"].shape == (0,)

    # ServedModel (the latest complete version of export/ctr) takes plain Python values and names a
    # wrong dtype, where the raw signature above only says "string"/"float" with a position.
    model = ServedModel(trained["root"] / "export" / "ctr")
    assert model.version == max(int(p.name) for p in model.folder.parent.iterdir() if p.name.isdigit())
    np.testing.assert_allclose(model(good)["probability"], out["probability"].numpy(), rtol=1e-6)
    with pytest.raises(MdrecError, match=r"input price needs number values \(float32\); got string values"):
        model({**good, "price": ["1.0", "2.0"]})
    with pytest.raises(MdrecError, match=r"no signature 'score'.*its signatures: serving_default"):
        model(good, signature="score")


def test_cli_export_errors_are_one_line(trained, tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path), "--name", "ctr", "--export-dir", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run folder" in err
    assert main(["export", "--run", str(trained["run"]), "--name", "ctr", "--version", "1",
                 "--export-dir", str(trained["root"] / "export")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 1 already exists" in err
    assert not (tmp_path / "e").exists()


def test_serving_config_parses_back_and_pins_labelled_versions(trained, tmp_path, capsys):
    export_dir = tmp_path / "export"
    for _ in range(2):
        export_run(trained["run"], "ab", export_dir=export_dir)
    assert main(["serving-config", "--export-dir", str(export_dir)]) == 0
    config = text_format.Parse((export_dir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert entry.name == "ab" and entry.base_path == str((export_dir / "ab").resolve())
    assert entry.model_platform == "tensorflow" and entry.model_version_policy.latest.num_versions == 1

    assert main(["serving-config", "--export-dir", str(export_dir), "--labels", "ab=stable:1,canary:2"]) == 0
    config = text_format.Parse((export_dir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    batching = text_format.Parse((export_dir / "batching_parameters.txt").read_text(), batching_parameters_class()())
    assert batching.max_batch_size.value == 256 and batching.num_batch_threads.value == 4
    assert batching.batch_timeout_micros.value == 1000 and batching.max_enqueued_batches.value == 100

    # --keep never deletes a version models.config serves under a label.
    export_run(trained["run"], "ab", export_dir=export_dir, keep=1)
    assert sorted(p.name for p in (export_dir / "ab").iterdir()) == ["1", "2", "3"]
    capsys.readouterr()
    assert main(["serving-config", "--export-dir", str(export_dir), "--labels", "ab=stable:9"]) == 2
    assert "no version 9" in capsys.readouterr().err


def test_request_body_is_what_the_signature_serves(trained, tmp_path, capsys):
    import pandas as pd

    rows = pd.read_csv(trained["paths"]["test"]).head(5).drop(columns=["click"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["request", "--export", str(trained["root"] / "export" / "ctr"), "--rows",
                 str(tmp_path / "rows.csv")]) == 0
    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 5
    assert "empty behaviour sequences" in captured.err and "curl" in captured.err and ":predict" in captured.err
    assert body["instances"][0]["item_id_history"] == [""] * 5

    served = tf.saved_model.load(str(trained["version"])).signatures["serving_default"]
    columns = {k: tf.constant([row[k] for row in body["instances"]]) for k in body["instances"][0]}
    got = served(**columns)["probability"].numpy()
    inputs, _, model = _in_process(trained)
    inputs = {k: v[:5] for k, v in inputs.items()}
    inputs["item_id_history"] = np.full((5, 5), "", dtype=object)
    np.testing.assert_allclose(got, predict(model, inputs), rtol=1e-5, atol=1e-5)

    rows["item_id_history"] = ["i1|i2", "", "i3", "i4|i5|i6|i7|i8|i9", "i1"]
    rows.to_csv(tmp_path / "with_history.csv", index=False)
    assert main(["request", "--export", str(trained["root"] / "export" / "ctr"), "--rows",
                 str(tmp_path / "with_history.csv")]) == 0
    captured = capsys.readouterr()
    instances = json.loads(captured.out)["instances"]
    assert "empty behaviour" not in captured.err
    assert instances[0]["item_id_history"] == ["i1", "i2", "", "", ""]
    assert instances[3]["item_id_history"] == ["i5", "i6", "i7", "i8", "i9"]    # the most recent 5
