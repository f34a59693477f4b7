"""The registered model names and their paper options, read from the source without importing it.

The registry (registry.py) needs torch and every architecture: about 4 s to import. The workflow
checks each run's ``arch`` and options when it starts, which on a cluster is once per job, so it
reads them here instead: each builder is a literal ``def <name>(*, num_classes, width, ...)`` under
``@register_model("<name>", ...)`` (or a module's ``_register`` partial of it), returning a model
class of its module, so the names and options can be read from the modules' syntax trees.
tests/models/test_catalog.py keeps this equal to the registry.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

_MODELS = Path(__file__).resolve().parent
_DECORATORS = {"register_model", "_register"}
_NOT_OPTIONS = {"num_classes", "width"}


def _registered_name(decorator: ast.expr) -> str | None:
    if (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Name)
        and decorator.func.id in _DECORATORS
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
        and isinstance(decorator.args[0].value, str)
    ):
        return decorator.args[0].value
    return None


def _init_defaults(classes: dict[str, ast.ClassDef], name: str) -> list[str]:
    """The keyword-only arguments with a default of class ``name``'s ``__init__`` (or of the first
    base class in the module that has one)."""
    cls = classes.get(name)
    if cls is None:
        return []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            return [a.arg for a, default in zip(node.args.kwonlyargs, node.args.kw_defaults) if default is not None]
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            return _init_defaults(classes, base.id)
    return []


def _options(node: ast.FunctionDef, classes: dict[str, ast.ClassDef]) -> set[str]:
    """registry.model_options's rule, on the syntax tree: the builder's keyword arguments past
    num_classes and width, and with ``**options`` those of its return annotation's class."""
    options = {arg.arg for arg in node.args.kwonlyargs if arg.arg not in _NOT_OPTIONS}
    if node.args.kwarg is not None and node.returns is not None:
        returned = node.returns.value if isinstance(node.returns, ast.Constant) else ast.unparse(node.returns)
        options |= set(_init_defaults(classes, returned))
    return options


@cache
def model_catalog() -> dict[str, tuple[str, ...]]:
    """Registered name -> its paper options (sorted), sorted by name."""
    catalog: dict[str, tuple[str, ...]] = {}
    for path in sorted(_MODELS.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                name = _registered_name(decorator)
                if name is not None:
                    catalog[name] = tuple(sorted(_options(node, classes)))
    return dict(sorted(catalog.items()))
