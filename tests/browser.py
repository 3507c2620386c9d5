"""What the browser tests share: Debian's Chromium driven by Playwright, and a JupyterLab server started for one test.

``jupyter_lab(...)`` starts ``jupyter-lab`` from the test's environment on 127.0.0.1 with a free port and a token,
its config, data, runtime, settings and workspaces in a temporary home, and stops it (kernels included) on exit.
Chromium comes from Debian (``./kit test`` installs it); Playwright's own browser download is not used. A missing
browser, Playwright or ``jupyter-lab`` fails the test with what to install: ``./kit test`` installs all three.
"""
from __future__ import annotations

import contextlib
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
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser test needs Debian's Chromium, which is not installed. `./kit test` installs it; "
                    "by hand: apt-get update && apt-get install -y chromium", pytrace=False)
    return path


def playwright():
    """``(sync_playwright, PlaywrightTimeout)``, or a clear failure when the package is missing."""
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the playwright Python package (the [test] extra; ./kit test installs "
                    "it)", pytrace=False)
    return sync_playwright, PlaywrightTimeout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_settings(directory: Path, **extra: dict) -> Path:
    """User settings for the test's JupyterLab: no news toasts, no update checks, every cell kept in the DOM, plus
    ``extra`` ({"<plugin id>.jupyterlab-settings" path: values})."""
    overrides = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        **extra,
    }
    for name, values in overrides.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return directory


@contextlib.contextmanager
def jupyter_lab(home: Path, log_path: Path, root_args: list[str], env: dict | None = None,
                settings: dict | None = None):
    """A JupyterLab server (started in the checkout root with ``root_args`` naming its root folder) → {"base",
    "token", "pid"}; stopped on exit, gracefully so that its kernels stop too."""
    chromium()  # fail before starting anything when the browser is missing
    executable = Path(sys.executable).parent / "jupyter-lab"
    if not executable.exists():
        pytest.fail(f"{executable} not found: the browser test starts JupyterLab from the test's environment "
                    f"(./kit test creates it)", pytrace=False)
    port, token = free_port(), secrets.token_hex(16)
    # everything the server writes (config, runtime files, signing key, settings) stays in a temporary home;
    # the kernel spec and the widget extension are found in the environment's own share/jupyter
    env = dict(env if env is not None else os.environ, JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(lab_settings(home / "settings", **(settings or {}))),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    server = subprocess.Popen(
        [str(executable), *root_args, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.token={token}", "--LabApp.news_url=None"]
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 90 s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "pid": server.pid}
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


def shorten(text: str) -> str:
    """A long traceback's start and its end (where the exception and its message are)."""
    return text if len(text) <= 2500 else f"{text[:1000]}\n[…]\n{text[-1500:]}"


def error_texts(page) -> list[str]:
    """The text of every output that shows a Python traceback."""
    errors = page.locator(".jp-OutputArea-output", has_text="Traceback")
    return [shorten(errors.nth(i).inner_text()) for i in range(errors.count())]


def run_all_cells(page, timeout_s: float = 90) -> None:
    """Wait for the opened notebook and its kernel, then Run → Run All Cells from the menu bar."""
    _, PlaywrightTimeout = playwright()
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_s * 1000)
    # the notebook names its kernel (python3); wait until it is up so that "Run All" does not ask for one
    page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=timeout_s * 1000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.get_by_text("Run All Cells", exact=True).click()
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=3_000)
        dialog.get_by_role("button", name="Select").click()
    except PlaywrightTimeout:
        pass
