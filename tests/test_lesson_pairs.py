"""One text source per lesson: every notebooks/NN_name.ipynb is paired with a py:percent NN_name.py (jupytext), the
two agree cell by cell, the notebook is stored stripped with stable `cell-NN` ids, and `python -m cropkit.notebook
--sync` repairs a pair edited on either side."""
import json
import os
import re
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from cropkit.lessons import notebook, pairs

ROOT = Path(__file__).resolve().parent.parent
LESSONS = notebook.notebooks(ROOT / "notebooks")


def test_every_lesson_has_a_twin_and_nothing_else_is_paired():
    assert LESSONS and all(notebook.paired_text(p).exists() for p in LESSONS)
    texts = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert texts == [p.stem for p in LESSONS], "a .py in notebooks/ without its .ipynb (or the other way round)"
    config = (ROOT / "notebooks" / "jupytext.toml").read_text()
    assert re.search(r'^formats = "ipynb,py:percent"', config, re.M)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_ipynb_and_py_agree(path):
    differences = pairs.pair_differences(path)
    assert not differences, (f"{path.name} and {notebook.paired_text(path).name} disagree: {differences}; "
                             f"run `python -m cropkit.notebook --sync {path.relative_to(ROOT)}`")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_committed_form(path):
    """Stripped, `cell-NN` ids, the canonical install cell, only the kernel's and jupytext's metadata."""
    nb = nbformat.read(str(path), as_version=4)
    ids = [c["id"] for c in nb.cells]
    assert all(pairs.CELL_ID.match(i) for i in ids) and len(set(ids)) == len(ids), ids
    assert not pairs.normalise(nb), f"run `python -m cropkit.notebook --sync {path.relative_to(ROOT)}`"
    twin = jupytext.read(notebook.paired_text(path))
    tags = [c.metadata.get("tags") for c in twin.cells if c.metadata.get("tags")]
    assert tags == [["hosted-install"], ["parameters"]]


# ----------------------------------------------------------------------------- a pair edited on one side

@pytest.fixture
def pair(tmp_path):
    """A copy of lesson 00's pair and the jupytext configuration, the .py older than the .ipynb."""
    for name in ("00_tour.ipynb", "00_tour.py", "jupytext.toml"):
        shutil.copyfile(ROOT / "notebooks" / name, tmp_path / name)
    ipynb, text = tmp_path / "00_tour.ipynb", tmp_path / "00_tour.py"
    os.utime(text, (1_000_000_000, 1_000_000_000))
    os.utime(ipynb, (1_000_000_100, 1_000_000_100))
    assert pairs.pair_differences(ipynb) == []
    return ipynb, text


def _touch_newer(path: Path) -> None:
    os.utime(path, (1_000_000_200, 1_000_000_200))


def test_an_edited_py_is_caught(pair):
    ipynb, text = pair
    text.write_text(text.read_text().replace("## 1 · Data\n", "## 1 · Data, told differently\n"))
    (difference,) = pairs.pair_differences(ipynb)
    assert "source differs" in difference and "told differently" in difference


def test_an_edited_ipynb_is_caught(pair):
    ipynb, _ = pair
    nb = json.loads(ipynb.read_text())
    nb["cells"][0]["source"][0] = "# 00 · A different title\n"
    ipynb.write_text(json.dumps(nb))
    assert pairs.pair_differences(ipynb)


def test_a_lost_parameters_tag_or_cell_is_caught(pair):
    ipynb, text = pair
    source = text.read_text()
    text.write_text(source.replace('# %% tags=["parameters"]', "# %%", 1))
    assert any("metadata differs" in d for d in pairs.pair_differences(ipynb))
    text.write_text(source + '\n# %%\nprint("one more")\n')
    assert any("cells" in d for d in pairs.pair_differences(ipynb))
    text.unlink()
    assert "missing" in pairs.pair_differences(ipynb)[0]


def test_sync_from_an_edited_py_keeps_ids_and_numbers_new_cells(pair):
    ipynb, text = pair
    before = nbformat.read(str(ipynb), as_version=4)
    last = max(int(pairs.CELL_ID.match(c.id).group(1)) for c in before.cells)
    edited = '# %%\nprint("a new cell")\n\n# %% [markdown]\n# ## 2 · A model, edited'
    text.write_text(text.read_text().replace("# %% [markdown]\n# ## 2 · A model", edited, 1))
    _touch_newer(text)
    assert pairs.pair_differences(ipynb)
    assert notebook.sync(ipynb)
    assert pairs.pair_differences(ipynb) == []
    after = nbformat.read(str(ipynb), as_version=4)
    new = [c for c in after.cells if c.source == 'print("a new cell")']
    assert [c.id for c in new] == [f"cell-{last + 1:02d}"], "a new cell gets the next free number"
    old = [c for c in after.cells if c is not new[0]]
    assert [c.id for c in old] == [c.id for c in before.cells], "every other cell keeps its id"
    assert any("A model, edited" in c.source for c in after.cells)
    assert not notebook.has_outputs(ipynb) and not notebook.sync(ipynb), "a second sync changes nothing"


def test_sync_from_a_jupyterlab_save_strips_and_updates_the_py(pair):
    """What JupyterLab without jupytext leaves: outputs, counts, a random id, language_info; an edited text."""
    ipynb, text = pair
    nb = nbformat.read(str(ipynb), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "tags" not in c.metadata)
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code.execution_count = 3
    nb.cells.append(nbformat.v4.new_markdown_cell("A learner's note."))  # a random id
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells[0].source += "\n\nEdited in JupyterLab."
    nbformat.write(nb, str(ipynb))
    _touch_newer(ipynb)
    assert notebook.sync(ipynb)
    assert pairs.pair_differences(ipynb) == [] and not notebook.has_outputs(ipynb)
    assert "Edited in JupyterLab." in text.read_text() and "A learner's note." in text.read_text()
    after = nbformat.read(str(ipynb), as_version=4)
    assert all(pairs.CELL_ID.match(c.id) for c in after.cells) and "language_info" not in after.metadata


def test_sync_resets_a_drifted_install_cell(pair):
    ipynb, text = pair
    text.write_text(text.read_text().replace("cropkit @ git+", "cropkit @ git+https://example.org/fork#", 1))
    _touch_newer(text)
    notebook.sync(ipynb)
    first = next(c for c in nbformat.read(str(ipynb), as_version=4).cells if c.cell_type == "code")
    assert first.source == pairs.install_cell_source() and "example.org" not in text.read_text()


def test_sync_command_line(pair, capsys):
    ipynb, text = pair
    text.write_text(text.read_text().replace("## 1 · Data\n", "## 1 · Data (from an editor)\n"))
    _touch_newer(text)
    assert notebook.main(["--sync", str(text)]) == 0
    assert "synced" in capsys.readouterr().out and "from an editor" in ipynb.read_text()
    assert notebook.main(["--sync", str(ipynb)]) == 0 and capsys.readouterr().out == ""


def test_a_new_lesson_written_as_py(tmp_path):
    shutil.copyfile(ROOT / "notebooks" / "jupytext.toml", tmp_path / "jupytext.toml")
    text = tmp_path / "09_new.py"
    text.write_text('# %% [markdown]\n# # 09 · New\n\n# %% tags=["parameters"]\nPROFILE = "cpu"  # type: str  p\n'
                    '\n# %%\nprint(PROFILE)\n')
    assert notebook.sync(text)
    ipynb = tmp_path / "09_new.ipynb"
    nb = nbformat.read(str(ipynb), as_version=4)
    assert [c.id for c in nb.cells] == ["cell-00", "cell-01", "cell-02", "cell-03"]
    assert nb.cells[1].source == pairs.install_cell_source() and nb.cells[2].metadata["tags"] == ["parameters"]
    assert pairs.pair_differences(ipynb) == [] and not notebook.sync(ipynb) and not notebook.sync(text)


def test_jupyterlab_with_jupytext_saves_both_files(pair):
    """What `./kit lab` does on save: jupytext's contents manager (rooted at notebooks/) writes the .ipynb and the
    .py; the ids stay, and the pair is in its committed form."""
    from jupytext import TextFileContentsManager

    ipynb, text = pair
    manager = TextFileContentsManager()
    manager.root_dir = str(ipynb.parent)
    nb = manager.get(ipynb.name)["content"]
    nb.cells[0].source += "\n\nSaved from JupyterLab."
    manager.save({"type": "notebook", "content": nb}, ipynb.name)
    assert "Saved from JupyterLab." in text.read_text() and pairs.pair_differences(ipynb) == []
    saved = nbformat.read(str(ipynb), as_version=4)
    assert not pairs.normalise(saved) and saved.cells[0].id == "cell-00"
