"""Every lesson is a jupytext pair: ``notebooks/NN_name.ipynb`` (what JupyterLab, Colab, papermill and the wheel use)
and ``notebooks/NN_name.py`` (py:percent text, for editors and diffs), paired by ``notebooks/jupytext.toml``.
:func:`pair_differences` says where the two disagree (a test fails on it); ``python -m cropkit.notebook --sync``
syncs every pair (the newer file wins, as with ``jupytext --sync``), strips outputs, gives new cells the next
``cell-NN`` id and resets the hosted-service install cell to :func:`install_cell_source`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

# Where `pip install` fetches cropkit on a hosted service (Colab, Binder). A placeholder until the repository is
# public: the lessons' install cell, binder/ and the README's badges all derive from this one line.
REPOSITORY_URL = "https://github.com/cropkit/cropkit"


def install_cell_source(url: str = REPOSITORY_URL) -> str:
    """The first code cell of every lesson: installs cropkit on a hosted service (Colab, Binder) when it is not
    importable there; a no-op anywhere else. It cannot import cropkit, so the URL is written into it."""
    return f'''# On Colab or Binder this installs cropkit (a minute); anywhere else it does nothing.
import importlib, importlib.util, os, subprocess, sys
HOSTED = "google.colab" in sys.modules or any(k in os.environ for k in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"))
if HOSTED and importlib.util.find_spec("cropkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "cropkit @ git+{url}"])
    importlib.invalidate_caches()  # let this running kernel see the new package'''


TEXT_FORMAT = "py:percent"  # the paired text file of notebooks/NN_name.ipynb is notebooks/NN_name.py
INSTALL_TAG = "hosted-install"
CELL_ID = re.compile(r"^cell-(\d+)$")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
# what running or viewing a notebook writes into a cell (dropped by normalise; jupytext keeps most of it out of the .py)
_RUNTIME_CELL_METADATA = ("autoscroll", "collapsed", "scrolled", "execution", "ExecuteTime",
                          "jp-MarkdownHeadingCollapsed", "trusted", "papermill")
# jupytext's own layout hints (blank lines, markers), not content
_LAYOUT_CELL_METADATA = ("cell_marker", "lines_to_next_cell", "lines_to_end_of_cell_marker", "skipline", "noskipline")


def paired_text(path: str | Path) -> Path:
    """The py:percent twin of a lesson (``X.ipynb`` → ``X.py``)."""
    return Path(path).with_suffix(".py")


def _cell_key(cell) -> tuple:
    ignored = _RUNTIME_CELL_METADATA + _LAYOUT_CELL_METADATA
    metadata = {k: v for k, v in cell.get("metadata", {}).items() if k not in ignored}
    return cell["cell_type"], cell["source"].rstrip("\n"), json.dumps(metadata, sort_keys=True)


def pair_differences(path: str | Path) -> list[str]:
    """Where a lesson's ``.ipynb`` and its paired ``.py`` disagree (cell types, sources, cell metadata such as the
    ``parameters`` tag), as jupytext reads both; an empty list when they agree."""
    import jupytext

    path = Path(path)
    text = paired_text(path)
    if not text.exists():
        return [f"{text.name} is missing; run `jupytext --sync {path}`"]
    nb, twin = jupytext.read(path), jupytext.read(text)
    found = []
    if len(nb.cells) != len(twin.cells):
        found.append(f"{path.name} has {len(nb.cells)} cells, {text.name} has {len(twin.cells)}")
    for i, (a, b) in enumerate(zip(nb.cells, twin.cells)):
        if _cell_key(a) != _cell_key(b):
            parts = zip(("type", "source", "metadata"), _cell_key(a), _cell_key(b))
            what = next(name for name, x, y in parts if x != y)
            first_line = (b["source"].strip().splitlines() or [""])[0][:60]
            found.append(f"cell {i} ({a.get('id', '?')}): the {what} differs; {text.name} has {first_line!r}")
    return found


def normalise(nb) -> bool:
    """Put a lesson in its committed form, in place; True if anything changed: outputs and execution counts
    stripped, runtime cell metadata dropped, notebook metadata reduced to the kernel and jupytext's, the install
    cell (tagged ``hosted-install``, the first code cell) equal to :func:`install_cell_source`, and every cell id
    ``cell-NN``: a cell keeps a ``cell-NN`` id it has, any other cell (new, or a duplicate) gets the next free number
    in order, so ids are deterministic and never change for cells already committed."""
    import nbformat

    before = json.dumps(nb, sort_keys=True)
    install = [c for c in nb.cells if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if not install:
        first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(first_code, nbformat.v4.new_code_cell(metadata={"tags": [INSTALL_TAG]}))
        install = [nb.cells[first_code]]
    install[0].source = install_cell_source()
    for cell in nb.cells:
        cell.metadata = type(cell.metadata)({k: v for k, v in cell.metadata.items() if k not in _RUNTIME_CELL_METADATA})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    taken, numbered = set(), {}
    for i, cell in enumerate(nb.cells):
        match = CELL_ID.match(str(cell.get("id", "")))
        if match and cell["id"] not in taken:
            taken.add(cell["id"])
            numbered[i] = int(match.group(1))
    next_free = max(numbered.values(), default=-1) + 1
    for i, cell in enumerate(nb.cells):
        if i not in numbered:
            cell["id"] = f"cell-{next_free:02d}"
            next_free += 1
    nb.metadata = type(nb.metadata)({"kernelspec": nb.metadata.get("kernelspec", KERNELSPEC),
                                     **({"jupytext": nb.metadata["jupytext"]} if "jupytext" in nb.metadata else {})})
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)  # cell ids need 4.5
    return json.dumps(nb, sort_keys=True) != before


def sync(path: str | Path) -> bool:
    """Sync one lesson pair (``jupytext --sync``: the newer file wins), then :func:`normalise` the ``.ipynb`` and
    rewrite the ``.py`` from it. True if either file changed."""
    import jupytext
    from jupytext.cli import jupytext as jupytext_cli

    path = Path(path).with_suffix(".ipynb")
    text = paired_text(path)
    stamp = lambda: tuple(p.read_bytes() if p.exists() else b"" for p in (path, text))  # noqa: E731
    before = stamp()
    for _ in range(3):  # a pair made from a new .py settles on the second round; a committed pair on the first
        start = stamp()
        jupytext_cli(["--sync", "--quiet", str(path if path.exists() else text)])
        nb = jupytext.read(path)
        if normalise(nb):
            jupytext.write(nb, path)
        jupytext_cli(["--to", TEXT_FORMAT, "--quiet", str(path)])
        if stamp() == start:
            break
    return stamp() != before
