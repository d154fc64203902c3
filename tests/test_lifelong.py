"""Lifelong (Conure): isolation is exact, masks are disjoint, pruned space still learns, bad task
files fail with one clear error, and the command resumes per task."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import events

import mdrec  # noqa: F401
import tf_keras

from mdrec.errors import MdrecError
from mdrec.lifelong.masks import prune
from mdrec.lifelong.task_data import build_task_data
from mdrec.lifelong.tasks import parse_tasks
from mdrec.spec import load_spec
from mdrec.workflows.lifelong import World, learn_conure, lifelong_run
from mdrec.workflows.lifelong_eval import task_scores

SPEC = Path(__file__).resolve().parents[1] / "feature_specs" / "synthetic.yaml"
TASKS = """
encoder: {architecture: nextitnet, dim: 16, layers: 1, max_length: 10, dropout: 0.0}
defaults: {epochs: 3, retrain_epochs: 1, batch_size: 64, learning_rate: 0.01}
baselines: %s
tasks:
  - {name: next_item, kind: next_item, line: main, prune: 0.7}
  - {name: mini, kind: line_items, line: mini}
  - {name: age, kind: profile, target: age_group, prune: 0.0}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lifelong") / "synth"

    subprocess.run([sys.executable, "-m", "mdrec.cli", "data", "synth", "--preset", "transfer", "--out", str(out),
                    "--impressions", "30000", "--users", "400", "--items", "300"], check=True,
                   capture_output=True)
    return out

def _tasks(tmp_path: Path, baselines: bool = False, text: str | None = None) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(text if text is not None else TASKS % ("true" if baselines else "false"))
    return path

def test_isolation_is_exact_masks_disjoint_and_pruned_space_learns(data, tmp_path):
    tasks = parse_tasks(_tasks(tmp_path))
    tf_keras.utils.set_random_seed(0)
    vocabulary, task_data = build_task_data(tasks, load_spec(SPEC), data, log=lambda _: None)
    world = World(tasks, vocabulary, task_data)
    model = world.conure
    before: dict[int, np.ndarray] = {}
    previous_owners = model.owner_arrays()
    for d in task_data:
        t = d.task.index
        learned = learn_conure(model, d, tasks, world.rng, log=lambda _: None)
        owners = model.owner_arrays()
        for name, owner in owners.items():
            old = previous_owners[name]
            # Weights claimed earlier keep their owner; a new claim was free before task t.
            assert np.array_equal(owner[old > 0], old[old > 0])
            assert set(np.unique(owner[(old == 0) & (owner > 0)])) <= {t}
            # Pruned (freed) weights are exactly zero.
            values = dict(model.kernels())[name].kernel.numpy()
            assert np.all(values[owner == 0] == 0)
        previous_owners = owners
        if t > 1:  # trained only in the free (pruned) space, and it still learns
            assert learned["losses"][-1] < learned["losses"][0], learned["losses"]
        for i, scores in before.items():  # earlier tasks: bit-identical predictions
            again = task_scores(model, i, task_data[i - 1].eval_x, model.predict_masks(i))
            assert np.array_equal(scores, again), f"task {i} changed after learning task {t}"
        before[t] = task_scores(model, t, d.eval_x, model.predict_masks(t))
    # Every weight has one owner: no two tasks' masks overlap, and the masks are nested by task.
    owners = model.owner_arrays()
    for name, owner in owners.items():
        own = [(owner == t) for t in range(1, 4)]
        assert not np.any(own[0] & own[1]) and not np.any(own[1] & own[2]) and not np.any(own[0] & own[2])
        m1, m2 = model.predict_masks(1)[name].numpy(), model.predict_masks(2)[name].numpy()
        assert np.all(m1 <= m2)
    assert sum(int((o == 1).sum()) for o in owners.values()) > 0

def test_prune_keeps_largest_of_the_task_and_frees_the_rest():
    values = np.array([[0.5, -3.0], [0.1, 2.0]], np.float32)
    owner = np.array([[1, 0], [0, 0]], np.int32)
    new_values, new_owner = prune(values, owner, 2, 0.5)
    assert new_owner.tolist() == [[1, 2], [0, 0]] or new_owner.tolist() == [[1, 2], [0, 2]]
    assert int((new_owner == 2).sum()) == 2 and new_owner[0, 0] == 1  # round(0.5 * 3) = 2 kept
    assert new_values[0, 0] == 0.5 and new_values[1, 0] == 0.0  # task 1's weight untouched; smallest freed

@pytest.mark.parametrize("text, expected", [
    ("tasks:\n  - {name: a, kind: profile, target: gender}\n", "task 1 'a': field 'kind'"),
    ("tasks:\n  - {name: a, kind: next_item}\n  - {name: b, kind: line_items, prune: 1.5, line: mini}\n",
     "task 2 'b': field 'prune'"),
    ("tasks:\n  - {name: a, kind: next_item}\n  - {name: b, kind: profile}\n", "task 2 'b': field 'target'"),
    ("tasks:\n  - {name: a, kind: next_item}\n  - {name: a, kind: profile, target: gender}\n",
     "task 2 'a': field 'name'"),
    ("tasks:\n  - {name: a, kind: next_item, epoch: 3}\n", "task 1 'a': unknown field(s) epoch"),
    ("tasks:\n  - {name: a, kind: next_item}\n  - {name: b, kind: ranking}\n", "task 2 'b': field 'kind'"),
    ("tasks:\n  - {name: a, kind: next_item, repeats: 0}\n", "task 1 'a': field 'repeats'"),
    ("encoder: {pooling: max}\ntasks:\n  - {name: a, kind: next_item}\n", "encoder: field 'pooling'"),
])
def test_bad_task_files_give_one_error_naming_task_and_field(tmp_path, text, expected):
    path = _tasks(tmp_path, text=text)
    with pytest.raises(MdrecError) as error:
        parse_tasks(path)
    assert expected in str(error.value) and str(path) in str(error.value)

def test_repeats_add_random_windows_of_the_whole_history():
    from mdrec.lifelong.task_data import TaskData, training_rows
    from mdrec.lifelong.tasks import Task

    task = Task(index=2, name="t", kind="profile", line=None, target="g", prune=0.5, epochs=1, retrain_epochs=0,
                batch_size=2, learning_rate=0.1, repeats=3)
    histories = [[f"i{k}" for k in range(12)], ["a", "b"]]
    x = np.array([h[-4:] + [""] * (4 - len(h[-4:])) for h in histories], dtype=object)
    data = TaskData(task=task, x=x, y=np.array([0, 1]), eval_x=x, eval_targets=[0, 1], histories=histories)
    rows, labels = training_rows(data, 3, 4, np.random.default_rng(0))
    assert rows.shape == (6, 4) and labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert (rows[:2] == x).all()  # the first copy is the rows as they are
    for row, label in zip(rows, labels):
        window = [v for v in row if v]
        history = histories[label]
        if label == 1:  # a short history is the same in every copy
            assert window == history
        else:  # a full-length contiguous window of the whole history
            assert len(window) == 4 and any(history[s:s + 4] == window for s in range(len(history) - 3))
    assert len({tuple(r) for r in rows[::2]}) > 1  # windows differ between copies
    assert training_rows(data, 1, 4, np.random.default_rng(0))[0] is x


def test_unknown_line_names_the_task(data, tmp_path):
    text = TASKS.replace("line: mini", "line: nosuch") % "false"
    with pytest.raises(MdrecError, match="task 2 'mini': field 'line'"):
        build_task_data(parse_tasks(_tasks(tmp_path, text=text)), load_spec(SPEC), data, log=lambda _: None)

def test_run_with_baselines_resumes_per_task_and_reports(data, tmp_path):
    tasks, out = _tasks(tmp_path, baselines=True), tmp_path / "run"
    lines: list[str] = []
    assert lifelong_run(SPEC, tasks, out, data=data, stop_after=1, log=lines.append) == {"done": 1}
    first = json.loads((out / "progress.json").read_text())
    metrics = lifelong_run(SPEC, tasks, out, data=data, log=lines.append)
    assert any("resumed after task 1" in line for line in lines)
    assert metrics["losses"]["next_item"] == first["losses"]["next_item"]  # task 1 not retrained
    rows = {r["name"]: r for r in metrics["tasks"]}
    for r in rows.values():
        assert r["conure_change"] == 0.0  # Conure forgets nothing
    counts = metrics["parameters"]
    assert counts["conure"] < counts["per_task"] and counts["adapters"] < counts["per_task"]
    assert "Forgetting" in (out / "report.txt").read_text()
    assert (out / "metrics.json").is_file()
    # TensorBoard: each task's loss per epoch, and Conure's score of task 1 after every task (the
    # forgetting curve), written once per task although the run was resumed.
    conure = events(out / "tensorboard" / "conure")
    first_task, second = metrics["tasks"][0]["name"], metrics["tasks"][1]["name"]
    assert [v for _, v in conure[f"loss/{first_task}"]] == pytest.approx(metrics["losses"][first_task]["conure"])
    metric = next(k for k in conure if k.endswith(f"/{first_task}") and not k.startswith(("loss", "retrain")))
    assert [s for s, _ in conure[metric]] == list(range(1, len(metrics["tasks"]) + 1))
    assert len({round(v, 9) for _, v in conure[metric]}) == 1  # Conure forgets nothing
    assert f"loss/{second}" in events(out / "tensorboard" / "per_task")
