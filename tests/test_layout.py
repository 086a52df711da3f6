"""The library and the toolkit apart (issue 12, deliver 1 and 4).

- The library (``nprnn/*`` outside ``nprnn/app``) never imports the app: checked on
  every import statement, and by importing every library module in a fresh process.
  The exceptions, by design: ``nprnn/__init__.py``'s lazy ``__getattr__`` forwarding
  ``nprnn.load_run`` to ``nprnn.app.load_run``, and ``nprnn/__main__.py`` (the entry
  point of ``python -m nprnn``, which nothing imports).
- The app imports no private library name (no ``nprnn._workspace``, no ``_underscore``
  function) and reads no private attribute of a library module.
- Every module has ``__all__`` (private modules ``_*.py`` and ``__main__`` aside).
- ``import nprnn`` loads NumPy and nothing else of ours or of the optional packages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nprnn

PKG = Path(nprnn.__file__).resolve().parent
SRC = PKG.parent
LIBRARY = sorted(p for p in PKG.rglob("*.py") if "app" not in p.relative_to(PKG).parts)
APP = sorted((PKG / "app").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """``(node, absolute module, imported names, enclosing function)`` per import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def function_of(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name, [], function_of(node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            yield node, mod, [a.name for a in node.names], function_of(node)


def _is_app(mod: str, names) -> bool:
    return mod == "nprnn.app" or mod.startswith("nprnn.app.") or (
        mod == "nprnn" and "app" in names)  # fmt: skip


def test_the_library_never_imports_the_app():
    offenders = []
    for path in LIBRARY:
        rel = path.relative_to(SRC).as_posix()
        for node, mod, names, func in _imports(path):
            if not _is_app(mod, names):
                continue
            if rel == "nprnn/__init__.py" and func == "__getattr__":
                continue  # the lazy nprnn.load_run forwarder
            if rel == "nprnn/__main__.py":
                continue  # python -m nprnn: the entry point, not part of the library
            offenders.append(f"{rel}:{node.lineno} imports {mod} {names}")
    assert not offenders, offenders


def test_the_app_uses_no_private_library_name():
    offenders = []
    for path in APP:
        rel = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        library_aliases = set()
        for node, mod, names, _ in _imports(path):
            if not (mod == "nprnn" or mod.startswith("nprnn.")) or _is_app(mod, names):
                continue
            if any(p.startswith("_") for p in mod.split(".")):
                offenders.append(f"{rel}:{node.lineno} imports the private module {mod}")
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    offenders.append(f"{rel}:{node.lineno} imports the private name {mod}.{n}")
            if isinstance(node, ast.Import):
                library_aliases.update(a.asname or a.name.split(".")[0] for a in node.names)
            else:
                library_aliases.update(
                    a.asname or a.name for a in node.names if not a.name[0].isupper()
                )
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in library_aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):  # fmt: skip
                offenders.append(f"{rel}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not offenders, offenders


# private modules (_*.py) and the python -m script have no public names to list
PUBLIC = [p for p in (*LIBRARY, *APP) if p.name == "__init__.py" or not p.name.startswith("_")]


@pytest.mark.parametrize("path", PUBLIC, ids=lambda p: p.relative_to(SRC).as_posix())
def test_every_module_has_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    ]
    assert "__all__" in names, f"{path.name} has no __all__"


def _fresh(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


OPTIONAL = ("safetensors", "tqdm", "threadpoolctl", "matplotlib", "torch", "nprnn.app")


def test_import_nprnn_loads_numpy_only():
    loaded = _fresh(
        "import sys, json, nprnn; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('safetensors', 'tqdm', 'threadpoolctl', 'matplotlib', "
        "'torch') or m.startswith('nprnn.app'))))"
    )
    assert loaded == []


def test_importing_every_library_module_leaves_the_app_alone():
    mods = [_module_name(p) for p in LIBRARY if p.name != "__main__.py"]
    loaded = _fresh(
        f"import sys, json, importlib\nfor m in {mods!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nprnn.app'))))"
    )
    assert loaded == [], loaded


def test_load_run_is_forwarded_lazily():
    got = _fresh(
        "import sys, json, nprnn; before = 'nprnn.app' in sys.modules; f = nprnn.load_run; "
        "import nprnn.app; print(json.dumps([before, f is nprnn.app.load_run]))"
    )
    assert got == [False, True]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nprnn.nope  # noqa: B018


def test_packaging_gives_a_working_cli():
    """Finding 1: ``pip install nprnn`` must give an ``nprnn`` command that trains: what
    the app imports are dependencies, extras are only for the optional."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    deps = " ".join(project["project"]["dependencies"])
    for name in ("numpy", "safetensors", "tqdm", "threadpoolctl"):
        assert name in deps, name
    extras = project["project"]["optional-dependencies"]
    assert "cli" not in extras and {"plot", "test"} <= set(extras)
    assert project["project"]["scripts"]["nprnn"] == "nprnn.app.cli:main"
    data = project["tool"]["setuptools"]["package-data"]["nprnn.app"]
    assert any("corpora" in d for d in data)
    assert (PKG / "app" / "corpora" / "first_names.txt").is_file()
