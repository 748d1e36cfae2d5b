"""The package's shape: imports run downward with no loop, the public surface
is what ``__init__`` exports, and every backend name resolves."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from flask import Flask

import flask_smg_history
from flask_smg_history import errors
from flask_smg_history.backends import BACKENDS, load_backend_class
from flask_smg_history.config import KEYS, Settings, load_settings

PACKAGE = Path(flask_smg_history.__file__).parent

#: Each top-level module or subpackage, and its layer: a module imports only
#: from its own layer or below.
LAYERS = {
    "errors": 0,
    "version": 0,
    "records": 1,
    "config": 1,
    "search": 1,
    "schemas": 2,
    "signals": 2,
    "portable": 2,
    "backends": 2,
    "training": 3,
    "metrics": 3,
    "store": 3,
    "responses": 4,
    "state": 5,
    "api": 6,
    "cli": 6,
    "extension": 7,
    "__init__": 8,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue  # Alembic's scripts, loaded by Alembic, not imported
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("flask_smg_history", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the package that ``name`` imports, at any level of the
    file (functions and ``TYPE_CHECKING`` blocks included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_every_module_has_a_layer():
    assert {m.split(".")[1] for m in _graph() if "." in m} <= set(LAYERS)


def test_imports_run_downward():
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_loop():
    graph = _graph()
    state: dict[str, str] = {}
    loops = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                loops.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_the_checks_see_a_function_level_import(tmp_path):
    """The import walk reads imports inside functions too (the loops this
    layout removed were of that kind)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .extension import SmgHistory\n")
    modules = {"flask_smg_history.extension": PACKAGE / "extension.py", "flask_smg_history.m": source}
    assert _imports("flask_smg_history.m", source, modules) == {"flask_smg_history.extension"}


def test_every_error_the_package_defines_is_exported_and_raised():
    defined = {
        name
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.HistoryError) and cls.__module__ == errors.__name__
    }
    assert defined - set(flask_smg_history.__all__) == set()
    sources = "\n".join(p.read_text() for p in _modules().values())
    raised = {name for name in defined if f"raise {name}(" in sources or f"raise {name}." in sources}
    assert defined - raised == {"HistoryError"}  # the base class, for ``except HistoryError``


@pytest.mark.parametrize(
    "name",
    [
        *BACKENDS,
        "flask_smg_history.backends.memory.MemoryBackend",
        "flask_smg_history.backends.memory:MemoryBackend",
        "flask_smg_history.backends.sql.SqlBackend",
        "flask_smg_history.backends.sql:SqlBackend",
        "flask_smg_history.backends.redis.RedisBackend",
        "flask_smg_history.backends.redis:RedisBackend",
    ],
)
def test_every_backend_name_resolves_to_a_backend_class(name):
    cls = load_backend_class(name)
    assert issubclass(cls, flask_smg_history.Backend)
    assert cls.__name__ == (BACKENDS.get(name) or name).replace(":", ".").rsplit(".", 1)[1]


def test_get_state_of_an_app_without_the_extension_says_what_to_do():
    with pytest.raises(RuntimeError, match=r"SmgHistory\(app\)"):
        flask_smg_history.get_state(Flask("bare"))


def test_settings_are_typed_attributes_of_every_key():
    settings = load_settings({"SMG_HISTORY_REDIS_POOL_MAX_SIZE": 3}, environ={"SMG_HISTORY_RETENTION_DAYS": "2.5"})
    assert isinstance(settings, Settings)
    assert settings.redis_pool_max_size == 3 and settings.retention_days == 2.5
    assert {key.attribute for key in KEYS} == set(Settings.__dataclass_fields__)
    assert {key.kind for key in KEYS} <= {"str", "int", "float", "bool", "dict"}
    with pytest.raises(AttributeError):
        settings.no_such_setting  # noqa: B018
    assert settings.as_config()["SMG_HISTORY_REDIS_POOL_MAX_SIZE"] == 3
