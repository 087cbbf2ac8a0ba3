"""Self-checking exercises, in the style of Kaggle's learntools: check / hint / solution.

Each notebook has a module here (``nb01``, ``nb02``, ...) defining :class:`Exercise` objects. In a
notebook::

    from diffgan_lib.exercises import nb01
    ex = nb01.noisy_image          # or the alias: nb01.check_noisy_image(answer)

    def noisy_image(x0, t, eps, alpha_hat):
        return None                # TODO: your code here

    ex.check(noisy_image)          # prints Correct / Incorrect: why / Not attempted
    # ex.hint()  ex.solution()

A check never reveals the answer: it says whether the answer is right and, when it is not, what
kind of thing is wrong (a shape, a range, a value at one input). The reference solution lives here.

Test runs (``pytest`` through nbval) set ``DIFFGAN_FILL_SOLUTIONS=1``: an answer that is not
attempted is then replaced by the reference solution and checked, so the checks really run.
"""
from __future__ import annotations

import inspect
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

__all__ = ["Exercise", "Measured", "fill_solutions", "tensor_problem", "close", "CORRECT", "INCORRECT", "NOT_ATTEMPTED"]

CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"


def fill_solutions() -> bool:
    """True when the test run asks for unattempted answers to be replaced by the solutions."""
    return os.environ.get("DIFFGAN_FILL_SOLUTIONS", "") not in ("", "0")


# ----------------------------------------------------------------- helpers for the checks
def tensor_problem(out, expected: torch.Tensor, what: str = "the result", atol: float = 1e-5):
    """None if ``out`` is a tensor equal to ``expected``; else what is wrong (type, shape or values)."""
    if not torch.is_tensor(out):
        return f"{what} is a {type(out).__name__}, not a torch tensor"
    if tuple(out.shape) != tuple(expected.shape):
        return f"{what} has shape {tuple(out.shape)}; it should have shape {tuple(expected.shape)}"
    if not torch.allclose(out.float(), expected.float(), atol=atol, rtol=1e-4):
        return f"{what} has the right shape but wrong values"
    return None


def close(out, expected) -> bool:
    """True if ``out`` is a tensor of ``expected``'s shape and (nearly) its values."""
    return (torch.is_tensor(out) and out.shape == expected.shape
            and torch.allclose(out.float(), expected.float(), atol=1e-5, rtol=1e-4))


def _returns_none(answer: Any, probe: Optional[Callable[[Callable], Any]]) -> bool:
    if answer is None:
        return True
    if callable(answer) and probe is not None:
        try:
            return probe(answer) is None
        except Exception:   # a half-written function that raises counts as attempted
            return False
    return False


class Measured:
    """A reference value read from a results file when it is first needed (not at import, so the
    exercises import anywhere, also where the results files are not)."""

    def __init__(self, read: Callable[[], Any]):
        self.read = read

    def value(self) -> Any:
        return self.read()


@dataclass
class Exercise:
    """One exercise.

    Args:
        title: short name shown in messages.
        test: ``test(answer) -> None`` when correct, else a message saying *what* is wrong
            (never the expected value).
        hint_text: a nudge towards the idea.
        reference: the reference answer: a function (its source is the solution), a value, or a
            ``Measured`` value read from a results file when it is needed.
        probe: for function answers, ``probe(fn)`` calls it on sample inputs; a None result means
            "not attempted" (the starter returns None).
        solution_note: text printed after the solution (why it works).
    """
    title: str
    test: Callable[[Any], Optional[str]]
    hint_text: str
    reference: Any
    probe: Optional[Callable[[Callable], Any]] = None
    solution_note: str = ""

    def check(self, answer: Any) -> str:
        """Print and return CORRECT, INCORRECT or NOT_ATTEMPTED."""
        filled = ""
        if _returns_none(answer, self.probe):
            if not fill_solutions():
                print(f"○ {self.title}: not attempted yet. Replace the `None` with your answer, then run "
                      "this cell again. Stuck? Call .hint().")
                return NOT_ATTEMPTED
            answer, filled = self.reference_answer(), " (the reference solution, filled in by the test run)"
        try:
            problem = self.test(answer)
        except Exception as err:   # the student's code raised: say so, without a wall of traceback
            problem = f"your answer raised {type(err).__name__}: {err}"
        if problem is None:
            print(f"✓ {self.title}: correct{filled}.")
            return CORRECT
        if filled:
            raise AssertionError(f"the reference solution of {self.title!r} fails its own check: {problem}")
        print(f"✗ {self.title}: incorrect. {problem}")
        return INCORRECT

    def reference_answer(self) -> Any:
        """The reference answer (a ``Measured`` one read now)."""
        return self.reference.value() if isinstance(self.reference, Measured) else self.reference

    def hint(self) -> None:
        """Print a nudge towards the answer."""
        print(f"Hint ({self.title}): {self.hint_text}")

    def solution(self) -> None:
        """Print the reference solution (the source code of a function answer)."""
        ref = self.reference_answer()
        text = textwrap.dedent(inspect.getsource(ref)) if callable(ref) else repr(ref)
        print(f"Solution ({self.title}):\n{text}{self.solution_note}")
