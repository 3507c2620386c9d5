"""Notebook 04 in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

The test copies notebooks/04 into ``outputs/test-artifacts/browser/`` (under the server's root, git-ignored) with
``PROFILE = "smoke"`` in its parameters cell (the stored notebook keeps ``"cpu"``) and only the lesson's cells up to
the explorer's static figure (the whole lesson runs headlessly in the main job and its tests; here the question is
the live widget), opens it, runs all cells, waits for the explorer, moves the sparsity slider with the keyboard,
checks that the shown figures change, and saves ``outputs/test-artifacts/browser_04.png``. The server it starts is
stopped in the fixture's teardown.

Chromium comes from Debian (``./kit test`` installs it); Playwright's own browser download is not used.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from browser import ARTIFACTS, CHROMIUM_ARGS, ROOT, chromium, error_texts, jupyter_lab, playwright, run_all_cells

STEM = "04_structured_pruning"
RUN_TIMEOUT_S = 240  # the explorer's cells take seconds on two idle cores; minutes on a loaded machine


def smoke_copy(directory: Path) -> Path:
    """notebooks/04 with PROFILE = "smoke" and OUTPUT_DIR = ``directory``, written into ``directory``."""
    import nbformat

    nb = nbformat.read(str(ROOT / "notebooks" / f"{STEM}.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    assert lines[0].startswith('PROFILE = "cpu"') and lines[1].startswith("OUTPUT_DIR = ")
    lines[0] = 'PROFILE = "smoke"  # set by tests/test_browser.py'
    lines[1] = f"OUTPUT_DIR = {str(directory)!r}  # set by tests/test_browser.py"
    cell.source = "\n".join(lines)
    # the explorer's cells, then one that writes what the test reads (the lesson's last cell writes more)
    last = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "explorer.figure(state)" in c.source)
    nb.cells = nb.cells[:last + 1] + [nbformat.v4.new_code_cell(
        f"ck.notebook.save_results(OUTPUT_DIR, {STEM!r}, "
        "{'profile': PROFILE, 'widget_errors': [repr(e) for e in explorer.errors]})  # set by tests/test_browser.py")]
    path = directory / f"{STEM}.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, rooted at the repository; stopped at teardown."""
    workdir = ARTIFACTS / "browser"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with jupyter_lab(tmp_path_factory.mktemp("jupyter"), workdir / "jupyterlab.log",
                     [f"--ServerApp.root_dir={ROOT}"]) as server:
        yield dict(server, workdir=workdir)


def params_ratio(text: str) -> float:
    match = re.search(r"ratio to dense: params ([0-9.]+)×", text)
    assert match, f"the explorer shows no 'ratio to dense: params …' line; it shows:\n{text[:2000]}"
    return float(match.group(1))


def test_explorer_reacts_to_the_slider_in_jupyterlab(lab):
    executable = chromium()
    sync_playwright, _ = playwright()

    notebook = smoke_copy(lab["workdir"])
    results = lab["workdir"] / f"{STEM}.json"
    url = f"{lab['base']}/lab/tree/{notebook.relative_to(ROOT).as_posix()}?token={lab['token']}"
    shot, failed_shot = ARTIFACTS / "browser_04.png", ARTIFACTS / "browser_04_failed.png"
    shot.unlink(missing_ok=True)
    failed_shot.unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            run_all_cells(page)

            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not results.exists():  # the last cell writes the JSON
                errors = error_texts(page)
                if errors or time.monotonic() > deadline:
                    page.screenshot(path=str(failed_shot))
                    pytest.fail("the notebook did not finish in the browser"
                                + (":\n" + "\n---\n".join(errors) if errors else f" within {RUN_TIMEOUT_S} s"))
                time.sleep(1)
            page.wait_for_timeout(1000)  # let the last outputs render

            explorer = page.locator(".cropkit-explorer")
            explorer.scroll_into_view_if_needed()
            summary = explorer.locator(".jp-OutputArea-output", has_text="ratio to dense")
            summary.first.wait_for(timeout=30_000)
            before = params_ratio(explorer.inner_text())
            readout = explorer.locator(".widget-readout").first
            start_value = float(readout.inner_text())

            handle = explorer.locator(".noUi-handle").first
            handle.focus()
            page.keyboard.press("PageUp")  # one page of the slider: +5 steps
            page.wait_for_function(f"() => parseFloat(document.querySelector('.cropkit-explorer .widget-readout')"
                                   f".textContent) > {start_value}", timeout=10_000)
            deadline = time.monotonic() + 60
            after = before
            while after == before and time.monotonic() < deadline:
                page.wait_for_timeout(500)
                after = params_ratio(explorer.inner_text())
            moved_to = float(readout.inner_text())
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            assert "Traceback" not in explorer.inner_text(), explorer.inner_text()[:3000]
        finally:
            browser.close()

    assert moved_to > start_value
    assert after < before, f"params ratio did not fall after the slider moved {start_value} → {moved_to}"
    assert shot.exists() and shot.stat().st_size > 10_000
    state = json.loads(results.read_text())
    assert state["profile"] == "smoke" and state["widget_errors"] == []
