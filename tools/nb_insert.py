"""Insert (or replace) a block of cells in a notebook, before the first cell whose source starts with a marker.

    python tools/nb_insert.py notebooks/07_evaluation.ipynb tools/cells/nb07_xray.py "## Recap"

The cells file defines CELLS = [("md" | "code", text), ...]. The block is tagged (cell metadata
"block": the cells file's stem), so running the script again replaces the block instead of adding it twice.
"""
import runpy
import sys
from pathlib import Path

import nbformat as nbf


def main(nb_path, cells_path, marker):
    nb = nbf.read(nb_path, as_version=4)
    tag = Path(cells_path).stem
    nb.cells = [c for c in nb.cells if c.metadata.get("block") != tag]
    new = []
    for kind, text in runpy.run_path(cells_path)["CELLS"]:
        cell = nbf.v4.new_markdown_cell(text.strip("\n")) if kind == "md" else nbf.v4.new_code_cell(text.strip("\n"))
        cell.metadata["block"] = tag
        new.append(cell)
    at = next(i for i, c in enumerate(nb.cells) if "".join(c.source).lstrip().startswith(marker))
    nb.cells[at:at] = new
    nbf.write(nb, nb_path)
    print(f"{nb_path}: {len(new)} cells of {tag} before {marker!r} (cell {at})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
