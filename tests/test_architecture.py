"""The package's layers, read from its own imports: a module imports only from layers below its own
(or its own package), every import counted, those inside functions too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mdrec

ROOT = Path(mdrec.__file__).resolve().parent
# Bottom to top. Packages on one row are siblings: neither may import the other.
LAYERS = [
    ("errors", "fileio", "progress", "records", "ranking_stats"),
    ("encoding",),
    ("spec",),
    ("data",),
    ("layers",),
    ("models",),
    ("retrieval", "evaluation", "export"),   # index layers; metrics, ranking, baselines; serving pieces
    ("training",),
    ("pretraining",),
    ("transfer",),
    ("lifelong",),
    ("workflows",),                          # the only code that reads and writes run folders
    ("demo",),
    ("cli",),
]
RANK = {name: rank for rank, row in enumerate(LAYERS) for name in row}


def imported_packages(source: str) -> set[str]:
    """The top-level mdrec packages or modules a module's source imports (``mdrec.X...`` -> X)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "mdrec" else [])
        else:
            continue
        out |= {name.split(".")[1] for name in names if name.startswith("mdrec.")}
    return out


def layer_violations(package: str, source: str) -> list[str]:
    """Each import of a package at or above ``package``'s layer (other than its own)."""
    return [f"imports mdrec.{target} ({'a sibling' if RANK[target] == RANK[package] else 'a layer above'})"
            for target in sorted(imported_packages(source))
            if target != package and RANK[target] >= RANK[package]]


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_layer():
    packages = {package_of(p) for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT}
    assert packages <= set(RANK), f"add {sorted(packages - set(RANK))} to LAYERS"


def test_imports_only_go_down_the_layers():
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue
        problems = layer_violations(package_of(path), path.read_text(encoding="utf-8"))
        if problems:
            found[str(path.relative_to(ROOT))] = problems
    assert not found, found


def test_the_check_catches_an_upward_import_even_inside_a_function():
    hidden = "def f():\n    from mdrec.workflows.train import train_run\n    return train_run\n"
    assert layer_violations("models", hidden) == ["imports mdrec.workflows (a layer above)"]
    assert layer_violations("evaluation", "import mdrec.export.served\n") == ["imports mdrec.export (a sibling)"]
    assert layer_violations("training", "from mdrec.data import pipeline\nimport mdrec\n") == []
    assert layer_violations("data", "from mdrec.data.log import Log\n") == []


def test_the_public_api_resolves_lazily_to_the_library_objects():
    import subprocess
    import sys

    # `import mdrec` (done first everywhere, to select Keras 2) loads no TensorFlow by itself.
    probe = "import sys, mdrec; print('tensorflow' in sys.modules, len(mdrec.__all__))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", str(len(mdrec.__all__))]
    from mdrec.models.ctr import Star
    from mdrec.workflows.export import export_run
    from mdrec.workflows.train import train_run

    assert (mdrec.Star, mdrec.train_run, mdrec.export_run) == (Star, train_run, export_run)
    for name in mdrec.__all__:
        assert getattr(mdrec, name) is not None, name
    assert set(mdrec.__all__) <= set(dir(mdrec))
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        mdrec.no_such_thing


def test_typed_results_declare_the_early_stopping_score_they_record():
    """train_run's and pretrain_run's results are TypedDicts; the score key is built from the
    early-stopping metric's name, so a renamed metric must rename the declared key too."""
    from mdrec.pretraining.evaluation import EARLY_STOPPING as SEQUENCE_SCORE
    from mdrec.training.retrieval import EARLY_STOPPING as RETRIEVAL_SCORE
    from mdrec.workflows.pretrain import PretrainMetrics
    from mdrec.workflows.train import TrainMetrics

    assert f"best_valid_{SEQUENCE_SCORE}" in PretrainMetrics.__annotations__
    assert f"best_valid_{RETRIEVAL_SCORE}" in TrainMetrics.__annotations__


def record_keys(source: str, typed: str) -> set[str]:
    """The constant keys ``source`` writes into records of the TypedDict named ``typed``: dict
    literals annotated ``typed`` or returned by a function that returns it, and ``x["key"] = ...``
    on a name or parameter annotated ``typed`` in the same function (f-string keys are skipped)."""
    def is_typed(annotation: ast.expr | None) -> bool:
        return (isinstance(annotation, ast.Name) and annotation.id == typed) or \
            (isinstance(annotation, ast.Constant) and annotation.value == typed)

    def literal_keys(node: ast.expr | None) -> set[str]:
        if not isinstance(node, ast.Dict):
            return set()
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}

    keys = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = function.args
        names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if is_typed(a.annotation)}
        for node in ast.walk(function):
            if isinstance(node, ast.AnnAssign) and is_typed(node.annotation) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
                keys |= literal_keys(node.value)
            elif isinstance(node, ast.Return) and is_typed(function.returns):
                keys |= literal_keys(node.value)
        for node in ast.walk(function):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and \
                        target.value.id in names and isinstance(target.slice, ast.Constant):
                    keys.add(target.slice.value)
    return keys


def test_typed_results_declare_every_key_their_records_get():
    """A key written into a typed result (a dict literal or an assignment on a variable annotated
    with the TypedDict, in the module that declares it) must be declared in the TypedDict."""
    import importlib

    results = [("train", "TrainMetrics"), ("pretrain", "PretrainMetrics"), ("index", "IndexReport"),
               ("lifelong", "LifelongMetrics"), ("branches_report", "BranchesReport"), ("branches", "BranchesReport")]
    undeclared = {}
    for name, typed in results:
        module = importlib.import_module(f"mdrec.workflows.{name}")
        keys = record_keys(Path(module.__file__).read_text(encoding="utf-8"), typed)
        assert keys, f"workflows/{name}.py: no record annotated {typed} found"
        undeclared[name] = sorted(keys - set(getattr(module, typed).__annotations__))
    assert undeclared == {name: [] for name, _ in results}
    # and it can fail: an undeclared key, in a literal or assigned, is reported; another TypedDict's is not
    probe = ("def f(r: R) -> R:\n    r['late'] = 1\n    return {'a': 1, 'typo': 2, **r}\n"
             "def g() -> None:\n    x: R = {'a': 1, 'b': 2}\n    y: S = {'other': 1}\n    x['c'] += 1\n")
    assert record_keys(probe, "R") - {"a", "b"} == {"late", "typo", "c"}


def module_imports(path: Path) -> set[str]:
    """The mdrec modules ``path`` imports (``from mdrec.a import b`` counts mdrec.a.b when that is a
    module, else mdrec.a), those inside functions and under TYPE_CHECKING too."""
    modules = {module_name(p) for p in ROOT.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "mdrec":
                out.add(name)
    return out - {module_name(path)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (strongly connected
    components of more than one module)."""
    order, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in order:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles


def test_no_two_modules_import_each_other_even_around_a_loop():
    """Inside a package too: a loop of imports hidden in functions works until someone moves one of
    them to the top of a file; one direction per pair keeps every module importable on its own."""
    graph = {module_name(p): module_imports(p) for p in ROOT.rglob("*.py")}
    assert import_cycles(graph) == []


def test_the_cycle_check_catches_a_loop_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
