"""Lessons with the real lessons' contract (a parameters cell with PROFILE and OUTPUT_DIR, results through
save_results) and a body of a line or two: what the main job's tests run instead of the real lessons."""
from __future__ import annotations

from pathlib import Path

import nbformat


def tiny_lesson(folder: Path, name: str, *body: str) -> Path:
    """``folder/name.ipynb``: the parameters cell, one cell per ``body`` source, then a cell that saves
    ``{"profile": PROFILE, "answer": 42}`` as the lesson's results."""
    cells = [nbformat.v4.new_code_cell('PROFILE = "cpu"  # type: str  profile\n'
                                       'OUTPUT_DIR = "outputs"  # type: str  where results go',
                                       metadata={"tags": ["parameters"]}),
             *(nbformat.v4.new_code_cell(source) for source in body),
             nbformat.v4.new_code_cell(f'import cropkit as ck\nck.notebook.save_results(OUTPUT_DIR, "{name}", '
                                       '{"profile": PROFILE, "answer": 42})')]
    path = folder / f"{name}.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                   "display_name": "Python 3", "language": "python"}}), str(path))
    return path
