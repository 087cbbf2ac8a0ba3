"""The course's exercises make a student think: few one-liners, and two real tasks in every notebook 01-10.

A reference solution's size is its number of statements (nested ones counted, the docstring not): a
value, a Measured value or a one-statement function is "a single expression or value"."""
from __future__ import annotations

import ast
import importlib
import inspect
import textwrap

import pytest

from diffgan_lib.course.exercises import Exercise, Measured

NOTEBOOKS = [f"nb{k:02d}" for k in range(1, 11)]


def statements(reference) -> int:
    """Statements in a reference solution's body (0 for a value)."""
    if isinstance(reference, Measured) or not callable(reference):
        return 0
    fn = ast.parse(textwrap.dedent(inspect.getsource(reference))).body[0]
    if not isinstance(fn, ast.FunctionDef):          # a lambda assigned to a name
        return 1
    body = fn.body[1:] if ast.get_docstring(fn) else fn.body
    return sum(isinstance(n, ast.stmt) for stmt in body for n in ast.walk(stmt))


def exercises(nb: str) -> dict[str, Exercise]:
    module = importlib.import_module(f"diffgan_lib.course.exercises.{nb}")
    return {name: getattr(module, name) for name in module.__all__ if isinstance(getattr(module, name), Exercise)}


def test_statement_count_counts_nested_statements_and_skips_docstrings():
    def two(x):
        """doc"""
        for _ in range(2):
            x = x + 1
        return x
    assert statements(two) == 3 and statements(3.0) == 0 and statements(lambda x: x) == 1


def test_at_most_15_percent_of_exercises_are_a_single_expression_or_value():
    sizes = {f"{nb}.{name}": statements(ex.reference) for nb in NOTEBOOKS for name, ex in exercises(nb).items()}
    single = sorted(name for name, n in sizes.items() if n <= 1)
    assert len(single) <= 0.15 * len(sizes), f"{len(single)} of {len(sizes)} exercises are one-liners: {single}"


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_every_notebook_has_two_exercises_of_four_or_more_statements(nb):
    big = [name for name, ex in exercises(nb).items() if statements(ex.reference) >= 4]
    assert len(big) >= 2, f"{nb}: exercises of 4+ statements: {big}"
