"""docs/exercises.md: each answer is a ``python`` block starting with ``# answer N``; this
runs those very blocks (from the repository root, each in a fresh namespace), so the doc
cannot drift from the code.  An answer checks itself with asserts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "docs" / "exercises.md"
BLOCK = re.compile(r"^```python\n(# answer (\d+)\n.*?)^```$", re.S | re.M)
N_EXERCISES = 5


def answers() -> dict[int, str]:
    return {int(m.group(2)): m.group(1) for m in BLOCK.finditer(EXERCISES.read_text(encoding="utf-8"))}


def test_there_are_five_answers():
    assert sorted(answers()) == list(range(1, N_EXERCISES + 1))


@pytest.mark.parametrize("number", range(1, N_EXERCISES + 1))
def test_answer_runs(number, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = answers()[number]
    exec(compile(code, f"{EXERCISES.name}, answer {number}", "exec"), {"__name__": f"answer{number}"})
