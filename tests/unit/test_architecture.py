"""The layer order of ARCHITECTURE.md, enforced on the import graph; shipped YAMLs validate.

Every ``.py`` under ``src/tensorfab/<layer>/`` is parsed with ``ast`` (nothing is imported) and
each import of ``tensorfab.<x>`` - module level or inside a function, ``import`` or
``from ... import``, absolute or relative - must name a layer that ``<layer>`` may import.

What a layer may import:

* the layers in its row of the table ("may import"), and what those may import in turn
  (transitively): the table lists direct neighbours, and the rule above it says a layer may
  import any layer *above* it, so ``engine`` (tasks, package, ...) may use ``models`` because
  ``tasks`` does;
* ``spec``, from every layer: the job spec is what every layer above it is run from, and the
  rows above list it transitively (hardware, data, models);
* itself;
* the shared modules that are no layer: ``tensorfab.errors``, ``tensorfab.registry``,
  ``tensorfab.files``, ``tensorfab.auth`` and the
  package root ``tensorfab`` (for ``__version__``).

Nothing but ``cli`` may import ``tensorfab.cli``.

Within a layer, modules import each other without a cycle (module level or inside a
function: a function-level import only hides a cycle). The one exception is a layer's
``registry.py``, whose functions import the modules that register into it, so that
building one model does not import every family at start-up.

And no layer but ``tasks`` branches on what a model reads (ARCHITECTURE.md, the task
contract): no ``["input"]["kind"]``, no compare with "image"/"text" or a task's name, no
``isinstance`` with a task class. What differs between tasks is a method of the task.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import tensorfab
from tensorfab.cli.demo import DEMO_OVERRIDES
from tensorfab.spec import load_spec

SRC = Path(tensorfab.__file__).resolve().parent
REPO = SRC.parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

# ARCHITECTURE.md's table, bottom up: layer -> the layers its row says it may import.
TABLE: dict[str, set[str]] = {
    "spec": set(),
    "hardware": {"spec"},
    "metrics": set(),
    "data": {"spec"},
    "models": {"spec"},
    "tasks": {"data", "models", "metrics"},
    "package": {"models", "tasks"},
    "engine": {"tasks", "package", "metrics", "hardware", "data"},
    "optimize": {"package", "tasks", "data", "metrics", "hardware"},
    "serve": {"optimize", "package", "tasks"},
    "bench": {"engine", "optimize", "hardware", "data", "models", "tasks", "metrics"},
    "jobs": {"spec", "hardware", "engine"},
    "audit": {"package", "metrics", "data", "engine"},
    "advise": {"engine", "hardware", "metrics"},
    "cli": set(),  # everything, see _allowed
}
SHARED = {"", "errors", "registry", "files", "auth"}  # tensorfab, tensorfab.errors, ...
TASKS_DIR = SRC / "tasks"
INPUT_KINDS = {"image", "text"}
# Outside tasks/, and why a task name may be compared there: the job spec is validated
# below the tasks layer (spec imports no layer), so it names the tasks its checks concern.
KIND_BRANCHING_EXEMPT = {"spec/schema.py"}


def _closure(layer: str) -> set[str]:
    seen: set[str] = set()
    todo = list(TABLE[layer])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(TABLE[name])
    return seen


def _allowed(layer: str) -> set[str]:
    if layer == "cli":
        return set(TABLE) | SHARED
    return _closure(layer) | {"spec", layer} | SHARED


def _layer_dirs() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _module_parts(path: Path) -> list[str]:
    """``src/tensorfab/engine/train.py`` -> ["tensorfab", "engine", "train"]."""
    parts = list(path.with_suffix("").parts)
    parts = parts[len(parts) - 1 - parts[::-1].index("tensorfab") :]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import in the file, relative ones made absolute."""
    package = _module_parts(path)
    if path.name != "__init__.py":
        package = package[:-1]
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: list[str]) -> Iterator[tuple[int, str]]:
    """Imports of ``source`` as if it were a module of ``package`` (["tensorfab", "models"])."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from tensorfab import engine` imports tensorfab.engine
                if base == "tensorfab" and _is_ours(alias.name):
                    yield node.lineno, f"tensorfab.{alias.name}"
        elif isinstance(node, ast.Call) and _is_import_module(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value


def _is_ours(name: str) -> bool:
    """A sub-package or module of tensorfab (not an attribute such as ``__version__``)."""
    return name in TABLE or (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "import_module"


def _target(module: str) -> str | None:
    """The layer (or shared module) a ``tensorfab...`` import names; None if not ours."""
    parts = module.split(".")
    if parts[0] != "tensorfab":
        return None
    return parts[1] if len(parts) > 1 else ""


def _violations(root: Path, allowed: set[str], repo: Path = REPO) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, module in _imports(path):
            target = _target(module)
            if target is not None and target not in allowed:
                bad.append(f"{path.relative_to(repo)}:{line}: imports {module}")
    return bad


def _module_name(path: Path) -> str:
    return ".".join(_module_parts(path))


def _layer_edges(source: str, module: str, package: list[str], known: set[str]) -> set[str]:
    """The modules of ``known`` that ``source`` (module ``module``) imports, each
    ``from a import b`` naming ``a.b`` where that is a module; registry.py's lazy imports
    of the modules that register into it are left out (see the module docstring)."""
    lazy: set[int] = set()
    tree = ast.parse(source)
    if module.endswith(".registry"):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                lazy |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in lazy or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
            continue
        base = node.module or ""
        if node.level:
            anchor = package[: len(package) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.add(full if full in known else base)
    return {m for m in found & known if m != module}


def _layer_graph(layer_dir: Path) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in sorted(layer_dir.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        package = _module_parts(path) if path.name == "__init__.py" else name.split(".")[:-1]
        graph[name] = _layer_edges(path.read_text(encoding="utf-8"), name, package, set(paths))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_every_layer_folder_is_in_the_table() -> None:
    # a new folder must get a row here (and in ARCHITECTURE.md) before it can be checked
    assert set(_layer_dirs()) <= set(TABLE), set(_layer_dirs()) - set(TABLE)
    assert {"spec", "models", "tasks", "package", "engine", "cli"} <= set(_layer_dirs())


def test_table_only_points_up() -> None:
    # the table is listed bottom up: every layer a row names comes earlier in it
    order = list(TABLE)
    for layer, deps in TABLE.items():
        assert all(order.index(d) < order.index(layer) for d in deps), layer


@pytest.mark.parametrize("layer", [d for d in sorted(TABLE) if (SRC / d).is_dir()])
def test_layer_imports_follow_the_table(layer: str) -> None:
    allowed = _allowed(layer)
    bad = _violations(SRC / layer, allowed)
    shown = ", ".join(sorted(f"tensorfab.{a}" if a else "tensorfab" for a in allowed))
    assert not bad, f"{layer} may import only {shown}; found:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", [d for d in sorted(TABLE) if (SRC / d).is_dir()])
def test_modules_of_a_layer_import_each_other_without_a_cycle(layer: str) -> None:
    cycle = _cycle(_layer_graph(SRC / layer))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_cycle_check_sees_function_level_imports_and_spares_registry_loaders() -> None:
    known = {"tensorfab.m.a", "tensorfab.m.b", "tensorfab.m.registry", "tensorfab.m"}
    a = "from tensorfab.m.b import x\n"
    b = "def f():\n    from tensorfab.m import a\n"  # hidden in a function: still an edge
    assert _layer_edges(a, "tensorfab.m.a", ["tensorfab", "m"], known) == {"tensorfab.m.b"}
    assert _layer_edges(b, "tensorfab.m.b", ["tensorfab", "m"], known) == {"tensorfab.m.a"}
    graph = {"tensorfab.m.a": {"tensorfab.m.b"}, "tensorfab.m.b": {"tensorfab.m.a"}}
    assert _cycle(graph) == ["tensorfab.m.a", "tensorfab.m.b", "tensorfab.m.a"]
    assert _cycle({"tensorfab.m.a": {"tensorfab.m.b"}, "tensorfab.m.b": set()}) == []
    loader = "from tensorfab.m.a import y\ndef load():\n    from tensorfab.m import b\n"
    edges = _layer_edges(loader, "tensorfab.m.registry", ["tensorfab", "m"], known)
    assert edges == {"tensorfab.m.a"}


def test_shared_modules_import_no_layer() -> None:
    bad = []
    for path in sorted(SRC.glob("*.py")):
        bad += [
            f"{path.relative_to(REPO)}:{line}: imports {module}"
            for line, module in _imports(path)
            if _target(module) not in (None, *SHARED)
        ]
    assert not bad, "errors.py, registry.py and __init__.py must stay layer-free:\n" + "\n".join(
        bad
    )


def test_import_collection_sees_every_kind_of_import() -> None:
    # the checker itself: module level, inside functions, relative, `from tensorfab import x`
    source = (
        "import tensorfab.cli.main\n"
        "from tensorfab import engine, __version__\n"
        "def f():\n"
        "    from tensorfab.tasks import create_task\n"
        "    from ..package import io\n"
        "    from . import lenet\n"
        "    importlib.import_module('tensorfab.serve')\n"
    )
    found = list(_imports_in(source, ["tensorfab", "models"]))
    assert sorted(found) == [
        (1, "tensorfab.cli.main"),
        (2, "tensorfab"),
        (2, "tensorfab.engine"),
        (4, "tensorfab.tasks"),
        (5, "tensorfab.package"),
        (6, "tensorfab.models"),
        (7, "tensorfab.serve"),
    ]
    targets = {_target(m) for _, m in found}
    assert targets - _allowed("models") == {"cli", "engine", "tasks", "package", "serve"}


def test_violation_message_names_file_line_and_import(tmp_path: Path) -> None:
    fake_layer = tmp_path / "src" / "tensorfab" / "models"
    fake_layer.mkdir(parents=True)
    (fake_layer / "bad.py").write_text("def f():\n    from tensorfab.cli import main\n")
    bad = _violations(fake_layer, _allowed("models"), repo=tmp_path)
    assert bad == ["src/tensorfab/models/bad.py:2: imports tensorfab.cli"]


def _task_words() -> set[str]:
    """The words a branch on the kind of task would compare with: input kinds, task names."""
    from tensorfab.tasks import register_all

    return INPUT_KINDS | set(register_all().names())


def _task_classes() -> set[str]:
    """Classes the task modules define (the contract's own types in base.py excepted)."""
    names = set()
    for path in TASKS_DIR.glob("*.py"):
        if path.name != "base.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    return names


def _const(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _kind_branches(source: str, words: set[str], classes: set[str]) -> Iterator[tuple[int, str]]:
    """(line, what) for each branch on the kind of task in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _const(node.slice) == "kind":
            inner = node.value
            if isinstance(inner, ast.Subscript) and _const(inner.slice) == "input":
                yield node.lineno, '["input"]["kind"]'
        elif isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, ast.Tuple | ast.Set | ast.List) else [side]
                hit = [_const(v) for v in values if _const(v) in words]
                if hit:
                    yield node.lineno, f"compares with {hit[0]!r}"
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
            kinds = node.args[1] if len(node.args) > 1 else None
            named = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
            for n in named:
                name = getattr(n, "id", None) or getattr(n, "attr", None)
                if name in classes:
                    yield node.lineno, f"isinstance(..., {name})"


def _kind_violations(root: Path, words: set[str], classes: set[str]) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "tasks" or rel.as_posix() in KIND_BRANCHING_EXEMPT:
            continue
        for line, what in _kind_branches(path.read_text(encoding="utf-8"), words, classes):
            bad.append(f"src/tensorfab/{rel.as_posix()}:{line}: {what}")
    return bad


def test_no_input_kind_branching_outside_tasks() -> None:
    bad = _kind_violations(SRC, _task_words(), _task_classes())
    assert not bad, (
        "branch on the kind of task only inside src/tensorfab/tasks/ (make it a Task "
        "method, see ARCHITECTURE.md); found:\n" + "\n".join(bad)
    )


def test_kind_branching_check_sees_each_form(tmp_path: Path) -> None:
    # the checker itself: each form it must catch, and look-alikes it must leave alone
    source = (
        'if meta["input"]["kind"] == "x":\n'  # 1: the kind subscript
        "    pass\n"
        'if meta["task"] != "token-classification":\n'  # 3: a task name
        "    pass\n"
        'ok = kind in ("image", "other")\n'  # 5: an input kind in a tuple
        "ok = isinstance(task, TokenClassification)\n"  # 6: a task class
        "ok = isinstance(task, (int, tasks.TextClassification))\n"  # 7: by attribute
        'ok = result["kind"] == "compare"\n'  # 8: another kind of "kind": fine
        'd = {"text": t}\n'  # 9: a key, not a compare: fine
    )
    words = {"image", "text", "token-classification"}
    classes = {"TokenClassification", "TextClassification"}
    found = sorted(_kind_branches(source, words, classes))
    assert found == [
        (1, '["input"]["kind"]'),
        (3, "compares with 'token-classification'"),
        (5, "compares with 'image'"),
        (6, "isinstance(..., TokenClassification)"),
        (7, "isinstance(..., TextClassification)"),
    ]
    layer = tmp_path / "serve"
    layer.mkdir()
    (layer / "x.py").write_text("a = 1\nif kind == 'text':\n    pass\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "y.py").write_text("if kind == 'text':\n    pass\n")
    assert _kind_violations(tmp_path, words, classes) == [
        "src/tensorfab/serve/x.py:2: compares with 'text'"
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_yaml_validates(path: Path) -> None:
    from tensorfab.models import model_entry

    spec = load_spec(path)
    assert spec.name == path.stem
    kind = model_entry(spec.model.name).meta["input"]
    kinds = {
        "image-classification": "image",
        "tabular-classification": "table",
        "recommendation": "user",
    }
    assert kind == kinds.get(spec.task, "text")


def test_examples_are_shipped() -> None:
    assert {"digits-lenet.yaml", "mnist-lenet.yaml"} <= {p.name for p in EXAMPLES}


def test_digits_example_is_the_demo_job() -> None:
    from_file = load_spec(REPO / "examples" / "digits-lenet.yaml").model_dump()
    demo = load_spec(None, DEMO_OVERRIDES).model_dump()
    from_file.pop("output")
    demo.pop("output")
    assert from_file == demo


# --- Every file write goes through tensorfab.files.atomic_path -------------------------------
# A writer call is fine inside ``with atomic_path(...) as tmp:`` (or as write_text_atomic, which
# is one); anywhere else it is a direct write that a crash can leave half done. Not data files,
# so allowed by (file, text on the line): the metrics log is appended a line at a time (its
# rewrite on resume is atomic), as are a job's logs, and /proc/self/clear_refs is a kernel
# switch, not a file.
# Libraries that write whole directories or graphs themselves (TensorBoard's SummaryWriter,
# save_pretrained, shutil.copytree, torch.onnx.export, onnxruntime's quantizers) are not calls
# this rule can see into.
DIRECT_WRITE_ALLOWED = {
    ("engine/rundir.py", 'open(self.path, "a"'): "append-only metrics.jsonl",
    ("bench/meter.py", 'Path("/proc/self/clear_refs").write_text'): "kernel control file",
    ("jobs/backend.py", 'open(job_dir / "supervisor.log", "ab")'): "append-only log",
    ("jobs/daemon.py", 'open(self.state_dir / "daemon.log", "ab")'): "append-only log",
    ("jobs/supervisor.py", 'open(job_dir / STDOUT, "ab")'): "append-only job log",
    ("jobs/supervisor.py", 'open(job_dir / STDERR, "ab")'): "append-only job log",
}
WRITE_METHODS = {"write_text", "write_bytes", "savefig"}
SAVE_MODULES = {"torch", "np", "numpy"}  # torch.save, np.save
DUMPS = {"dump", "safe_dump"}  # json.dump / yaml.dump to an open stream
COPIES = {"copy", "copy2", "copyfile"}  # shutil


def _is_write_mode(node: ast.AST) -> bool:
    value = node.value if isinstance(node, ast.Constant) else None
    return (
        isinstance(value, str)
        and 0 < len(value) <= 3
        and set(value) <= set("rwaxbt+")
        and (bool(set(value) & set("wax+")))
    )


def _writer(call: ast.Call) -> str | None:
    """The name of the file-writing call ``call`` is (``write_text``, ``open``...), else None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
    modes = [*call.args[:2], *(k.value for k in call.keywords if k.arg == "mode")]
    stream = len(call.args) >= 2 or any(k.arg == "stream" for k in call.keywords)
    if (
        name in WRITE_METHODS
        or (name == "save" and owner in SAVE_MODULES)
        or (name in DUMPS and owner in ("json", "yaml") and stream)
        or (name in COPIES and owner == "shutil")
        or (name == "save_file")
        or (name == "open" and any(_is_write_mode(m) for m in modes))
    ):
        return name
    return None


def _is_atomic_block(node: ast.AST) -> bool:
    if not isinstance(node, (ast.With, ast.AsyncWith)):
        return False
    for item in node.items:
        func = getattr(item.context_expr, "func", None)
        if getattr(func, "id", None) == "atomic_path" or getattr(func, "attr", "") == "atomic_path":
            return True
    return False


def _writes(tree: ast.AST, inside: bool = False) -> Iterator[tuple[int, str]]:
    """(line, writer) for every writer call in ``tree`` outside an ``atomic_path`` block."""
    inside = inside or _is_atomic_block(tree)
    if isinstance(tree, ast.Call) and not inside:
        name = _writer(tree)
        if name:
            yield tree.lineno, name
    for child in ast.iter_child_nodes(tree):
        yield from _writes(child, inside)


def _direct_writes(root: Path, repo: Path = REPO) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "files.py" and path.parent == root:
            continue  # the one place that writes files
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        where = path.relative_to(root).as_posix()
        for line, name in _writes(ast.parse(source)):
            if not any(f == where and text in lines[line - 1] for f, text in DIRECT_WRITE_ALLOWED):
                bad.append(f"{path.relative_to(repo)}:{line}: {name}() writes a file directly")
    return bad


def test_every_file_write_goes_through_atomic_path() -> None:
    assert _direct_writes(SRC) == [], "write through tensorfab.files.atomic_path"


def test_direct_write_rule_sees_each_writer(tmp_path: Path) -> None:
    root = tmp_path / "src" / "tensorfab"
    (root / "engine").mkdir(parents=True)
    (root / "files.py").write_text("open(p, 'w')\n")  # the one place allowed
    (root / "engine" / "bad.py").write_text(
        "import json, shutil, torch\n"
        "from tensorfab.files import atomic_path\n"
        "p.write_text('x')\n"
        "with open(p, 'wb') as f:\n"
        "    json.dump({}, f)\n"
        "torch.save(state, p)\n"
        "fig.savefig(p)\n"
        "shutil.copy2(a, b)\n"
        "with atomic_path(p) as tmp:\n"
        "    tmp.write_bytes(b'')\n"
        "    torch.save(state, tmp)\n"
        "open(p).read()\n"
        "p.open('a')\n"
        "json.dumps({})\n"
    )
    assert _direct_writes(root, repo=tmp_path) == [
        "src/tensorfab/engine/bad.py:3: write_text() writes a file directly",
        "src/tensorfab/engine/bad.py:4: open() writes a file directly",
        "src/tensorfab/engine/bad.py:5: dump() writes a file directly",
        "src/tensorfab/engine/bad.py:6: save() writes a file directly",
        "src/tensorfab/engine/bad.py:7: savefig() writes a file directly",
        "src/tensorfab/engine/bad.py:8: copy2() writes a file directly",
        "src/tensorfab/engine/bad.py:13: open() writes a file directly",
    ]
