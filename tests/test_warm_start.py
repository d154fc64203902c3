"""ID warm start across vocabularies: rows move by ID, not by position."""
from __future__ import annotations

import numpy as np
import pytest

import mdrec  # noqa: F401
from conftest import tiny_frame
from mdrec.errors import MdrecError
from mdrec.training.run import TrainConfig
from mdrec.workflows.restore import load_trained, restore_trained
from mdrec.workflows.train import train_run


def _splits(folder, frame):
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("train", frame.iloc[:300]), ("valid", frame.iloc[300:360]), ("test", frame.iloc[360:])):
        paths[name] = folder / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return paths


def _config(paths, model="shared_bottom", **extra):
    return TrainConfig(model=model, train=str(paths["train"]), valid=str(paths["valid"]), test=str(paths["test"]),
                       epochs=2, batch_size=64, learning_rate=1e-2, seed=0, hyperparameters={"hidden": [8]}, **extra)


def _table(run_path, paths):
    from mdrec.data.log import load_log
    from mdrec.data.pipeline import model_inputs

    run, config, spec, transform, model = load_trained(run_path)
    restore_trained(model, run, model_inputs(load_log(paths["test"], spec), spec))
    lookup = model.encoder.lookups["user_id"]
    rows = {key: row for key, row in zip(lookup.get_vocabulary(), model.encoder.tables["user_id"].embeddings.numpy())}
    return rows, model


def test_warm_start_copies_shared_ids_and_keeps_new_ones_fresh(tmp_path, tiny_spec_path):
    source = _splits(tmp_path / "source", tiny_frame(420, seed=0))
    target_frame = tiny_frame(420, seed=1)
    # The target knows users the source never saw (u100+), and the shared ones in another order.
    target_frame["user_id"] = target_frame["user_id"].str.replace("u", "", regex=False).astype(int).map(
        lambda u: f"u{u + 60}" if u % 2 else f"u{u}")
    target = _splits(tmp_path / "target", target_frame)
    train_run(tiny_spec_path, _config(source), tmp_path / "src", log=lambda *_: None)
    source_rows, _ = _table(tmp_path / "src", source)

    from mdrec.data.log import load_log
    from mdrec.data.pipeline import model_inputs
    from mdrec.data.transform import Transform
    from mdrec.models.registry import build_model
    from mdrec.spec import load_spec
    from mdrec.training.inference import build
    from mdrec.transfer.warm_start import warm_start

    spec = load_spec(tiny_spec_path)
    log = load_log(target["train"], spec)
    transform = Transform.fit(log, spec)
    model = build_model("shared_bottom", spec, transform, hidden=[8])
    build(model, model_inputs(log, spec))
    fresh = dict(zip(model.encoder.lookups["user_id"].get_vocabulary(),
                     model.encoder.tables["user_id"].embeddings.numpy().copy()))
    report = warm_start(model, tmp_path / "src")
    after = dict(zip(model.encoder.lookups["user_id"].get_vocabulary(),
                     model.encoder.tables["user_id"].embeddings.numpy()))
    shared = [k for k in after if k in source_rows and k not in ("", "[UNK]")]
    new = [k for k in after if k not in source_rows]
    assert shared and new
    for key in shared:
        np.testing.assert_array_equal(after[key], source_rows[key])
    for key in new:
        np.testing.assert_array_equal(after[key], fresh[key])
    np.testing.assert_array_equal(after["[UNK]"], source_rows["[UNK]"])  # the OOV row is carried too
    assert report["user_id"]["copied"] == len(shared) + 2 and report["user_id"]["fresh"] == len(new)
    assert "item_id" in report  # every table shared by name moves, not only users


def test_train_warm_start_records_counts_and_width_mismatch_is_named(tmp_path, tiny_spec_path):
    source = _splits(tmp_path / "source", tiny_frame(420, seed=0))
    target = _splits(tmp_path / "target", tiny_frame(420, seed=1))
    train_run(tiny_spec_path, _config(source), tmp_path / "src", log=lambda *_: None)
    lines = []
    metrics = train_run(tiny_spec_path, _config(target, warm_start=str(tmp_path / "src")), tmp_path / "dst",
                        log=lines.append)
    assert metrics["warm_start"]["user_id"]["copied"] > 2
    assert any(line.startswith("warm start from") for line in lines)

    wide = tiny_spec_path.read_text().replace("name: user_id, role: user_id, type: categorical, embedding_dim: 4",
                                              "name: user_id, role: user_id, type: categorical, embedding_dim: 6")
    wide_spec = tmp_path / "wide.yaml"
    wide_spec.write_text(wide)
    with pytest.raises(MdrecError, match="table 'user_id' is 4 wide in the warm-start run and 6"):
        train_run(wide_spec, _config(target, warm_start=str(tmp_path / "src")), tmp_path / "dst2",
                  log=lambda *_: None)


def test_users_only_the_source_knows_join_the_vocabulary_with_their_source_rows(tmp_path, tiny_spec_path):
    source = _splits(tmp_path / "source", tiny_frame(420, seed=0))
    target_frame = tiny_frame(630, seed=1)
    target_frame = target_frame[target_frame["user_id"].str[1:].astype(int) % 3 != 0]  # u0, u3, ...: source only
    target = _splits(tmp_path / "target", target_frame.reset_index(drop=True))
    train_run(tiny_spec_path, _config(source), tmp_path / "src", log=lambda *_: None)
    source_rows, _ = _table(tmp_path / "src", source)
    lines = []
    # (No L2 on the tables: the CTR models' default penalises every row of a table each step, and
    # Adam then walks an unread row to 0 whatever the coefficient; two_tower's default is 0.)
    config = _config(target, warm_start=str(tmp_path / "src"))
    config.hyperparameters["embeddings_l2"] = 0.0
    train_run(tiny_spec_path, config, tmp_path / "dst", log=lines.append)
    rows, model = _table(tmp_path / "dst", target)
    cold = sorted(k for k in source_rows if k.startswith("u") and int(k[1:]) % 3 == 0)
    assert cold and all(k in rows for k in cold)   # a row of their own, not the OOV bucket
    added = next(line for line in lines if line.startswith("warm start: "))
    assert added.startswith(f"warm start: {len(cold)} users known only to ")
    # No target row reads them, so training leaves the source line's rows as they were: what a
    # cold-start user is scored with.
    for key in cold:
        np.testing.assert_array_equal(rows[key], source_rows[key])
