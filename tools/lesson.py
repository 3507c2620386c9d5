"""What every lesson generator shares: the hosted-service install cell, stable cell ids, and writing the file.

    from lesson import write
    write(cells, "notebooks/00_tour.ipynb")

The install cell comes from `cropkit.notebook.install_cell_source` (the repository URL is defined there, once) and is
the first code cell, right after the title. Cell ids are `cell-00`, `cell-01`, … so regenerating a lesson that did
not change leaves its file unchanged.
"""
import sys
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the generators run as `python tools/make_X.py` from the checkout

from cropkit.notebook import install_cell_source  # noqa: E402

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write(cells: list, path: str) -> None:
    """Insert the install cell after the title, number the cells, strip outputs and write ``ROOT/path``."""
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    cells = cells[:first_code] + [nbf.v4.new_code_cell(install_cell_source(), metadata={"tags": ["hosted-install"]})] \
        + cells[first_code:]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nbf.write(nbf.v4.new_notebook(cells=cells, metadata=KERNEL), str(ROOT / path))
