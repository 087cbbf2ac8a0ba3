"""The exercise framework: correct / incorrect / not attempted, and the test-run fill-in."""
import pytest

from diffgan_lib.course.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise


def _reference(a, b):
    return a + b


@pytest.fixture
def ex():
    return Exercise("addition", test=lambda f: None if f(2, 3) == 5 else "2 + 3 gave another number",
                    hint_text="use the + operator", reference=_reference, probe=lambda f: f(1, 1))


def starter(a, b):
    return None   # TODO


def test_three_outcomes_without_leaking_the_answer(ex, capsys, monkeypatch):
    monkeypatch.delenv("DIFFGAN_FILL_SOLUTIONS", raising=False)
    assert ex.check(starter) == NOT_ATTEMPTED
    assert ex.check(lambda a, b: a - b) == INCORRECT
    assert ex.check(lambda a, b: a + b) == CORRECT
    assert ex.check(lambda a, b: 1 / 0) == INCORRECT
    out = capsys.readouterr().out
    assert "not attempted" in out and "2 + 3 gave another number" in out and "ZeroDivisionError" in out
    assert "return a + b" not in out


def test_hint_and_solution_on_request(ex, capsys):
    ex.hint()
    ex.solution()
    out = capsys.readouterr().out
    assert "use the + operator" in out and "return a + b" in out


def test_test_run_fills_in_the_reference(ex, capsys, monkeypatch):
    monkeypatch.setenv("DIFFGAN_FILL_SOLUTIONS", "1")
    assert ex.check(starter) == CORRECT
    assert "filled in by the test run" in capsys.readouterr().out
    broken = Exercise("broken", test=lambda f: "always wrong", hint_text="", reference=_reference,
                      probe=lambda f: f(1, 1))
    with pytest.raises(AssertionError, match="reference solution of 'broken' fails its own check"):
        broken.check(starter)
