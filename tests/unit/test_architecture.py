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
  ``tensorfab.files`` and the
  package root ``tensorfab`` (for ``__version__``).

Nothing but ``cli`` may import ``tensorfab.cli``.
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
    "cli": set(),  # everything, see _allowed
}
SHARED = {"", "errors", "registry", "files"}  # tensorfab, tensorfab.errors, ...


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


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_yaml_validates(path: Path) -> None:
    from tensorfab.models import model_entry

    spec = load_spec(path)
    assert spec.name == path.stem
    kind = model_entry(spec.model.name).meta["input"]
    assert kind == ("image" if spec.task == "image-classification" else "text")


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
# rewrite on resume is atomic), and /proc/self/clear_refs is a kernel switch, not a file.
# Libraries that write whole directories or graphs themselves (TensorBoard's SummaryWriter,
# save_pretrained, shutil.copytree, torch.onnx.export, onnxruntime's quantizers) are not calls
# this rule can see into.
DIRECT_WRITE_ALLOWED = {
    ("engine/rundir.py", 'open(self.path, "a"'): "append-only metrics.jsonl",
    ("bench/meter.py", 'Path("/proc/self/clear_refs").write_text'): "kernel control file",
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
