"""The package's code stays readable at a glance (no function longer than a screen) and its modules import in any
order (no import cycle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import PACKAGE, ROOT

MAX_FUNCTION_LINES = 60
PAGE_SCRIPT = "display_predictions_with_an_embedded_model"  # Streamlit runs it; importing it would draw the page


def long_functions(source: str) -> dict[str, int]:
    """{function name: its lines} for each function of the source over MAX_FUNCTION_LINES, its decorators excluded."""
    return {
        node.name: length
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    }


def test_no_function_of_the_package_is_longer_than_a_screen():
    found = {
        f"{path.relative_to(PACKAGE)}:{name}": length
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, length in long_functions(path.read_text()).items()
    }
    assert found == {}


def test_the_check_finds_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def short():\n    pass\n\n\ndef long():\n{body}") == {"long": MAX_FUNCTION_LINES + 1}


def test_each_module_of_the_package_imports_first_in_a_fresh_interpreter():
    """A cycle (a imports b, which imports a name of a) fails only when a is imported first: page_server imported
    environment first, and found environment -> engines -> cpus -> environment."""
    modules = [
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem != PAGE_SCRIPT
    ]

    def error(module: str) -> str:
        run = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
        return run.stderr.strip().splitlines()[-1] if run.returncode else ""

    with ThreadPoolExecutor(2) as pool:
        failed = {module: message for module, message in zip(modules, pool.map(error, modules), strict=True) if message}
    assert failed == {}
