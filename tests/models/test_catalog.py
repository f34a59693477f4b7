"""segbench/models/catalog.py: the registered names and options, read from the source."""

from __future__ import annotations

import subprocess
import sys

from segbench.models import list_models, model_options
from segbench.models.catalog import model_catalog


def test_the_catalog_read_from_the_source_is_the_registry() -> None:
    """The workflow's start-up check reads names and options without importing torch."""
    assert model_catalog() == {name: tuple(sorted(model_options(name))) for name in list_models()}
    code = "import sys; from segbench.models.catalog import model_catalog; model_catalog(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
