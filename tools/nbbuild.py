"""The notebook builders' common part: collect markdown and code cells, then write the notebook.

    from nbbuild import code, md, write     # in tools/build_nbXX.py, run as python tools/build_nbXX.py
    md("# Title ..."); code("print(1)"); write("XX_name.ipynb")
"""
from pathlib import Path

import nbformat as nbf

CELLS = []


def md(text):
    CELLS.append(nbf.v4.new_markdown_cell(text.strip("\n")))


def code(text):
    CELLS.append(nbf.v4.new_code_cell(text.strip("\n")))


def write(name: str) -> Path:
    """Write the collected cells as notebooks/NAME with the course's clean metadata."""
    nb = nbf.v4.new_notebook()
    nb.cells = CELLS
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    out = Path(__file__).resolve().parents[1] / "notebooks" / name
    nbf.write(nb, out)
    print("wrote", out)
    return out
