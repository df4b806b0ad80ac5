"""The package's code stays readable at a glance: no function longer than a screen."""

from __future__ import annotations

import ast

from tests.conftest import PACKAGE

MAX_FUNCTION_LINES = 60


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
