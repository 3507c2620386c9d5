"""Notebook 04 in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

The test copies notebooks/04 into ``outputs/test-artifacts/browser/`` (under the server's root, git-ignored) with
``PROFILE = "smoke"`` in its parameters cell (the stored notebook keeps ``"cpu"``), opens it, runs all cells,
waits for the explorer, moves the sparsity slider with the keyboard, checks that the shown figures change, and
saves ``outputs/test-artifacts/browser_04.png``. The server it starts is stopped in the fixture's teardown.

Chromium comes from Debian (``./kit test`` installs it); Playwright's own browser download is not used.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "outputs" / "test-artifacts"
STEM = "04_structured_pruning"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
RUN_TIMEOUT_S = 240  # the smoke profile takes about a minute on two idle cores


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser test needs Debian's Chromium, which is not installed. `./kit test` installs it; "
                    "by hand: apt-get update && apt-get install -y chromium", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    path = directory / f"{STEM}.ipynb"
    nbformat.write(nb, str(path))
    return path


def lab_settings(directory: Path) -> Path:
    """User settings for the test's JupyterLab: no news toasts, no update checks, every cell kept in the DOM."""
    overrides = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, values in overrides.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return directory


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, rooted at the repository; stopped at teardown."""
    chromium()  # fail before starting anything when the browser is missing
    executable = Path(sys.executable).parent / "jupyter-lab"
    if not executable.exists():
        pytest.fail(f"{executable} not found: the browser test starts JupyterLab from the test's environment "
                    f"(./kit test creates it)", pytrace=False)
    home = tmp_path_factory.mktemp("jupyter")
    workdir = ARTIFACTS / "browser"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    port, token = free_port(), secrets.token_hex(16)
    # everything the server writes (config, runtime files, signing key, settings) stays in a temporary home;
    # the kernel spec and the widget extension are found in the environment's own share/jupyter
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(lab_settings(home / "settings")),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    log = open(workdir / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [str(executable), "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={ROOT}", "--LabApp.news_url=None"]
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{(workdir / 'jupyterlab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 90 s:\n{(workdir / 'jupyterlab.log').read_text()}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "workdir": workdir, "pid": server.pid}
    finally:
        try:  # a graceful shutdown also stops the kernels the server started
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=5).close()
            server.wait(timeout=20)
        except Exception:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        log.close()


def params_ratio(text: str) -> float:
    match = re.search(r"ratio to dense: params ([0-9.]+)×", text)
    assert match, f"the explorer shows no 'ratio to dense: params …' line; it shows:\n{text[:2000]}"
    return float(match.group(1))


def error_texts(page) -> list[str]:
    errors = page.locator(".jp-OutputArea-output", has_text="Traceback")
    return [errors.nth(i).inner_text()[:3000] for i in range(errors.count())]


def test_explorer_reacts_to_the_slider_in_jupyterlab(lab):
    executable = chromium()
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the playwright Python package (the [test] extra; ./kit test installs "
                    "it)", pytrace=False)

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
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
            # the notebook names its kernel (python3); wait until it is up so that "Run All" does not ask for one
            page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.get_by_text("Run All Cells", exact=True).click()
            dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            try:
                dialog.wait_for(timeout=3_000)
                dialog.get_by_role("button", name="Select").click()
            except PlaywrightTimeout:
                pass

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
