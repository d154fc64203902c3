"""Retrieval exports: the brute-force one runs on TensorFlow alone (fresh process, saved_model_cli)
and returns the exact top-K of the query's line; the ScaNN one needs the ScaNN ops, says so, and
matches once they are loaded; the standalone ScaNN searchers travel with the export."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.cli import main
from mdrec.data.pipeline import model_inputs
from mdrec.models.two_tower import candidate_signature, query_signature
from mdrec.retrieval.exact import exact_top_k
from mdrec.retrieval.searcher import load_scann_searcher
from mdrec.training.retrieval import candidate_embeddings, query_embeddings
from mdrec.training.run import TrainConfig
from mdrec.workflows.export import export_run
from mdrec.workflows.restore import evaluation_log, load_trained, restore_trained
from mdrec.workflows.train import train_run
from conftest import TINY_SPEC, write_tiny_splits

PYTHON = sys.executable
SAVED_MODEL_CLI = str(Path(sys.executable).with_name("saved_model_cli"))
TOP_K = 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval-export")
    (root / "tiny.yaml").write_text(TINY_SPEC)
    paths = write_tiny_splits(root)
    config = TrainConfig(model="two_tower", train=str(paths["train"]), valid=str(paths["valid"]),
                         test=str(paths["test"]), epochs=2, batch_size=32, learning_rate=5e-3,
                         hyperparameters={"embedding_dim": 8, "hidden": [8]})
    train_run(root / "tiny.yaml", config, root / "run", log=lambda *_: None)
    exports = {kind: export_run(root / "run", f"tt_{kind}", export_dir=root / "export", index=kind, top_k=TOP_K)
               for kind in ("brute_force", "scann")}
    run, config, spec, transform, model = load_trained(root / "run")
    log, history, _ = evaluation_log(config, spec, transform, paths["test"])
    inputs = model_inputs(log, spec, history)
    restore_trained(model, run, inputs)
    query_inputs = {k: v for k, v in inputs.items() if k in query_signature(spec)}
    catalogue = model.catalogue
    domain = np.searchsorted(catalogue.domains, log.frame["__domain__"].to_numpy(dtype=str))
    queries, items = query_embeddings(model, query_inputs), candidate_embeddings(model, catalogue)
    exact_scores, exact_rows = exact_top_k(queries, items, TOP_K, membership=catalogue.membership,
                                           query_domain=domain)
    return {"root": root, "exports": exports, "inputs": query_inputs, "catalogue": catalogue, "domain": domain,
            "queries": queries, "items": items, "exact_scores": exact_scores, "exact_rows": exact_rows,
            "spec": spec, "model": model}


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _as_bytes(inputs: dict) -> dict:
    return {k: (np.asarray(v, dtype=bytes) if v.dtype == object else v) for k, v in inputs.items()}


_SERVE = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    assert not any(m.startswith(("mdrec", "scann")) for m in sys.modules)
    try:
        model = tf.saved_model.load(sys.argv[1])
    except Exception as error:
        print("LOAD FAILED:", str(error).splitlines()[0])
        if sys.argv[3] != "import-scann":
            sys.exit(3)
        import scann  # noqa: F401  (registers the Scann ops)
        model = tf.saved_model.load(sys.argv[1])
    rows = dict(np.load(sys.argv[2], allow_pickle=False))
    out = model.signatures["serving_default"](**{k: tf.constant(v) for k, v in rows.items()})
    np.savez(sys.argv[2] + ".out.npz", scores=out["scores"].numpy(), item_ids=out["item_ids"].numpy().astype("S"))
""")


def _serve_in_fresh_process(export: Path, trained, tmp_path, mode: str):
    np.savez(tmp_path / "rows.npz", **_as_bytes(trained["inputs"]))
    done = subprocess.run([PYTHON, "-c", _SERVE, str(export), str(tmp_path / "rows.npz"), mode],
                          env=_clean_env(), capture_output=True, text=True, timeout=180)
    out = dict(np.load(str(tmp_path / "rows.npz") + ".out.npz")) if done.returncode == 0 else None
    return done, out


def test_brute_force_export_runs_on_tensorflow_alone_and_is_exact(trained, tmp_path):
    done, out = _serve_in_fresh_process(trained["exports"]["brute_force"], trained, tmp_path, "plain")
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(out["scores"], trained["exact_scores"], rtol=1e-5, atol=1e-5)
    catalogue = trained["catalogue"]
    line_of = {d: set(catalogue.ids[catalogue.membership[i]]) for i, d in enumerate(catalogue.domains)}
    for domain, ids in zip(trained["domain"], out["item_ids"].astype(str)):
        assert set(ids) <= line_of[catalogue.domains[domain]]  # never another line's item


def test_scann_export_needs_the_scann_ops_and_then_matches(trained, tmp_path):
    export = trained["exports"]["scann"]
    done, _ = _serve_in_fresh_process(export, trained, tmp_path, "plain")
    assert done.returncode == 3 and "Op type not registered 'Scann>" in done.stdout, done.stdout + done.stderr[-500:]
    done, out = _serve_in_fresh_process(export, trained, tmp_path, "import-scann")
    assert done.returncode == 0, done.stderr[-2000:]
    # Tiny catalogues are scored in full by ScaNN (no partitioning): the same scores as exact search.
    np.testing.assert_allclose(out["scores"], trained["exact_scores"], rtol=1e-4, atol=1e-4)
    metadata = json.loads((export / "assets" / "export.json").read_text())
    assert metadata["needs_scann_ops"] is True and metadata["index"] == "scann"


def test_standalone_scann_searchers_travel_with_the_export(trained, tmp_path):
    catalogue = trained["catalogue"]
    moved = tmp_path / "moved"
    shutil.copytree(trained["exports"]["scann"] / "assets" / "scann", moved)
    line = 0
    service = load_scann_searcher(moved / catalogue.domains[line])
    mine = np.flatnonzero(trained["domain"] == line)[:3]
    ids, _ = service.search(trained["queries"][mine], TOP_K)
    expected = catalogue.ids[trained["exact_rows"][mine]]
    assert [set(map(str, r)) for r in ids] == [set(map(str, r)) for r in expected]


def test_embedding_signatures_and_saved_model_cli(trained, tmp_path):
    export = trained["exports"]["brute_force"]
    loaded = tf.saved_model.load(str(export))
    items = trained["catalogue"].inputs(trained["spec"])
    got = loaded.signatures["item_embedding"](**{k: tf.constant(v) for k, v in items.items()})["embedding"]
    np.testing.assert_allclose(got.numpy(), trained["items"], rtol=1e-5, atol=1e-5)
    assert set(loaded.signatures["item_embedding"].structured_input_signature[1]) == set(
        candidate_signature(trained["spec"]))
    rows = {k: v[:10] for k, v in _as_bytes(trained["inputs"]).items()}
    np.savez(tmp_path / "rows.npz", **rows)
    spec = ";".join(f"{name}={tmp_path / 'rows.npz'}[{name}]" for name in rows)
    subprocess.run([SAVED_MODEL_CLI, "run", "--dir", str(export), "--tag_set", "serve", "--signature_def",
                    "query_embedding", "--inputs", spec, "--outdir", str(tmp_path / "out")],
                   check=True, env=_clean_env(), capture_output=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "embedding.npy"), trained["queries"][:10],
                               rtol=1e-5, atol=1e-5)


def test_index_option_is_refused_for_ctr_runs_and_unknown_lines_fail_clearly(trained, tmp_path, capsys):
    loaded = tf.saved_model.load(str(trained["exports"]["brute_force"]))
    rows = {k: tf.constant(v[:2]) for k, v in trained["inputs"].items()}
    rows["domain"] = tf.constant(["a", "nowhere"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="serves the domains"):
        loaded.signatures["serving_default"](**rows)
    ctr_run = tmp_path / "ctr"
    ctr_run.mkdir()
    config = json.loads((trained["root"] / "run" / "config.json").read_text())
    config["config"]["model"] = "star"
    (ctr_run / "config.json").write_text(json.dumps(config))
    assert main(["export", "--run", str(ctr_run), "--name", "x", "--export-dir", str(tmp_path / "e"),
                 "--index", "scann"]) == 2
    assert "index do(es) not apply to a ctr run" in capsys.readouterr().err
