"""The registered model names and their paper options, read from the source without importing it.

The registry (registry.py) needs torch and every architecture: about 4 s to import. The workflow
checks each run's ``arch`` and options when it starts, which on a cluster is once per job, so it
reads them here instead: each builder is a literal ``def <name>(*, num_classes, width, <options>)``
under ``@register_model("<name>", ...)`` (or a module's ``_register`` partial of it), so the names
and options can be read from the modules' syntax trees. tests/models/test_registry.py keeps this
equal to the registry.
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


@cache
def model_catalog() -> dict[str, tuple[str, ...]]:
    """Registered name -> its paper options, sorted by name."""
    catalog: dict[str, tuple[str, ...]] = {}
    for path in sorted(_MODELS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                name = _registered_name(decorator)
                if name is not None:
                    options = [arg.arg for arg in node.args.kwonlyargs if arg.arg not in _NOT_OPTIONS]
                    catalog[name] = tuple(options)
    return dict(sorted(catalog.items()))
