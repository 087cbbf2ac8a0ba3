"""Every committed notebook: learning goals first, a recap last, executed in order without errors,
short code cells, a small file and clean metadata (what a student sees before running anything)."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_CELL_LINES = 25
MAX_BYTES = 1_000_000


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestNotebook:
    def test_first_cell_has_title_and_learning_goals(self, path):
        first = _load(path)["cells"][0]
        assert first["cell_type"] == "markdown"
        text = _src(first)
        assert text.startswith("# "), "the first cell starts with the notebook's title"
        assert re.search(r"^#+ .*Learning goals", text, re.M | re.I), "a 'Learning goals' heading"
        assert re.search(r"Runtime", text), "the expected runtime"
        assert "RUNTIME_" not in text, "a runtime placeholder was left in"

    def test_recap_questions_and_next_near_the_end(self, path):
        tail = "\n".join(_src(c) for c in _load(path)["cells"][-3:] if c["cell_type"] == "markdown")
        assert re.search(r"^#+ .*Recap", tail, re.M), "a 'Recap' heading in the last cells"
        assert re.search(r"^#+ .*Questions", tail, re.M), "questions after the recap"

    def test_executed_in_order_without_errors(self, path):
        code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
        counts = [c["execution_count"] for c in code]
        assert None not in counts, "every code cell is executed (run the notebook top to bottom)"
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"execution order {counts}"
        assert counts[0] == 1, "executed in one fresh kernel"
        for c in code:
            for out in c.get("outputs", []):
                assert out["output_type"] != "error", f"error output: {out.get('ename')}: {out.get('evalue')}"
                assert out.get("name") != "stderr" or "Warning" in "".join(out.get("text", "")), \
                    f"stderr output: {''.join(out.get('text', ''))[:200]}"

    def test_code_cells_are_short(self, path):
        lengths = [len(_src(c).splitlines()) for c in _load(path)["cells"] if c["cell_type"] == "code"]
        assert max(lengths) <= MAX_CELL_LINES, f"a code cell has {max(lengths)} lines"

    def test_small_file_and_clean_metadata(self, path):
        assert path.stat().st_size < MAX_BYTES, f"{path.stat().st_size} bytes"
        meta = _load(path)["metadata"]
        assert meta.get("kernelspec", {}).get("name") == "python3"
        assert set(meta) <= {"kernelspec", "language_info", "widgets"}, sorted(meta)
