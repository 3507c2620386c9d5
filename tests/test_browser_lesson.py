"""Lesson 00 as a user meets it: ``./kit lab``, open ``00_tour.ipynb``, Run → Run All Cells (issue 10).

JupyterLab starts as ``./kit lab`` starts it: ``jupyter-lab --notebook-dir=notebooks`` from the checkout root (on
127.0.0.1 with a free port and a token, its config and runtime files in a temporary home, the kernel importing this
checkout's cropkit). The **stored, unmodified** notebook runs with its own parameters (``PROFILE = "cpu"``, the
relative ``OUTPUT_DIR = "outputs"``), so the kernel's working directory is ``notebooks/`` and the path rule of
:func:`cropkit.paths.lesson_output` is what is tested: the lesson's JSON and learning curve must appear, fresh, in
the checkout's ``outputs/``. The test then checks that no cell shows an error, closes the notebook without saving,
and checks that nothing under ``notebooks/`` changed (neither the ``.ipynb`` nor its jupytext ``.py`` twin).
Screenshot: ``outputs/test-artifacts/browser_00.png``. The server is stopped on the way out, whatever happened.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import pytest
from browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    ROOT,
    chromium,
    error_texts,
    jupyter_lab,
    playwright,
    run_all_cells,
    shorten,
)

STEM = "00_tour"
OUTPUTS = ROOT / "outputs"  # a relative OUTPUT_DIR in a checkout means the checkout root's outputs/
RUN_TIMEOUT_S = 300  # the cpu profile trains 15 epochs on digits: 20–40 s on two idle cores
ERROR = re.compile(r"Traceback|\w*Error\b")


def notebooks_state() -> tuple[str, dict[str, str]]:
    """``git status`` of notebooks/ and the hash of every file there that git does not ignore."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the test checks that running the lesson leaves notebooks/ unchanged")
    files = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "notebooks").split("\0")
    hashes = {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in sorted(set(files)) if f}
    return git("status", "--porcelain", "--untracked-files=all", "--", "notebooks"), hashes


def prompts(page) -> list[str]:
    """The execution prompt of every code cell: "[3]:" ran, "[*]:" running or queued, "[ ]:" never ran."""
    return page.eval_on_selector_all(".jp-Notebook .jp-CodeCell .jp-InputPrompt",
                                     "nodes => nodes.map(n => n.textContent.trim())")


def stderr_errors(page) -> list[str]:
    """Error outputs and stderr streams that mention a traceback or an exception."""
    texts = page.eval_on_selector_all(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        "nodes => nodes.map(n => n.innerText)")
    found = [shorten(t) for t in texts if ERROR.search(t)] + error_texts(page)
    return list(dict.fromkeys(found))  # an error output is both stderr and a traceback: once each


def close_without_saving(page, PlaywrightTimeout) -> None:
    """File → Close Tab; JupyterLab asks about the unsaved outputs, and the answer is Discard / Don't Save."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Close Tab$")).first.click()
    dialog = page.locator(".jp-Dialog")
    try:
        dialog.wait_for(timeout=10_000)
    except PlaywrightTimeout:
        return  # nothing unsaved (nothing asked)
    dialog.get_by_role("button", name=re.compile(r"Discard|Don.t Save", re.I)).click()
    dialog.wait_for(state="detached", timeout=10_000)


@pytest.fixture(scope="module")
def kit_lab(tmp_path_factory):
    """``./kit lab``: jupyter-lab --notebook-dir=notebooks, started in the checkout root; stopped at teardown."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ./kit exports it
    # ./kit's .venv imports the checkout's cropkit (an editable install); make sure this checkout's is the one
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    settings = {  # the test must not write the notebook: no autosave (and it closes without saving)
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    with jupyter_lab(tmp_path_factory.mktemp("jupyter"), ARTIFACTS / "browser_00.log", ["--notebook-dir=notebooks"],
                     env=env, settings=settings) as server:
        yield server


def test_lesson_00_runs_top_to_bottom_in_kit_lab(kit_lab):
    executable = chromium()
    sync_playwright, PlaywrightTimeout = playwright()
    start = time.time()
    before = notebooks_state()
    results, curve = OUTPUTS / f"{STEM}.json", OUTPUTS / f"{STEM}_learning_curve.png"
    shot, failed_shot = ARTIFACTS / "browser_00.png", ARTIFACTS / "browser_00_failed.png"
    shot.unlink(missing_ok=True)
    failed_shot.unlink(missing_ok=True)
    url = f"{kit_lab['base']}/lab/tree/{STEM}.ipynb?token={kit_lab['token']}"  # the server's root is notebooks/

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            run_all_cells(page)

            deadline, seen, started = time.monotonic() + RUN_TIMEOUT_S, [], False
            while True:
                seen, errors = prompts(page), stderr_errors(page)
                done = bool(seen) and all(re.fullmatch(r"\[\d+\]:", s) for s in seen)
                running = any("*" in s for s in seen)
                started = started or running
                stuck = started and not running and not done  # Run All stopped at an error
                if errors or done or stuck or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if done:  # the kernel reports idle once the last cell has finished
                page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=60_000)
                page.wait_for_timeout(1000)  # let the last outputs render
                errors = stderr_errors(page)
            images = page.locator(".jp-OutputArea-output img")
            if images.count():
                images.last.scroll_into_view_if_needed()
            page.screenshot(path=str(shot if done and not errors else failed_shot))
            if errors:
                pytest.fail("lesson 00 shows an error in JupyterLab (screenshot "
                            f"{failed_shot.relative_to(ROOT)}):\n" + "\n---\n".join(errors), pytrace=False)
            if not done:
                pytest.fail(f"lesson 00 did not run to the end within {RUN_TIMEOUT_S} s of Run All Cells; the code "
                            f"cells' prompts: {seen} (screenshot {failed_shot.relative_to(ROOT)})", pytrace=False)
            close_without_saving(page, PlaywrightTimeout)
        finally:
            browser.close()

    for path in (results, curve):
        assert path.exists() and path.stat().st_mtime >= start, (
            f"{path.relative_to(ROOT)} was not written by this run: the lesson's relative OUTPUT_DIR = 'outputs' "
            f"must mean the checkout's outputs/ (cropkit.paths.lesson_output)")
    state = json.loads(results.read_text())
    assert state["profile"] == "cpu" and state["epochs"] == len(state["history"])
    assert curve.stat().st_size > 10_000
    after = notebooks_state()
    assert after == before, (
        "running lesson 00 in JupyterLab changed notebooks/:\n"
        f"git status before:\n{before[0] or '(clean)'}\nafter:\n{after[0] or '(clean)'}\nchanged files: "
        f"{sorted(f for f in set(before[1]) | set(after[1]) if before[1].get(f) != after[1].get(f))}")
    assert shot.exists() and shot.stat().st_size > 10_000
