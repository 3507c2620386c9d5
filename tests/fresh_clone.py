"""The README's main command in a fresh clone of the committed HEAD, run once per test session.

Its lessons' outputs are the smoke-profile outputs every lesson test reads (`conftest.run_notebook`) whenever the
working tree's package and lessons equal HEAD (always on CI, which tests a clean clone): the lessons then run
once per session, not twice. With uncommitted changes to them, or without git and uv, the lessons run in this
checkout instead."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "./kit main --profile smoke"
# what the lessons are made of: when none differs from HEAD, the clone ran exactly this checkout's lessons
SOURCES = ("cropkit", "notebooks", "pyproject.toml", "kit")


def clean_env(**extra) -> dict:
    """The environment of a new user's shell: no PYTHONPATH to this checkout, no venv on PATH, no cropkit overrides."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("CROPKIT_")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


def uv_works() -> bool:
    return subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True).returncode == 0


def available() -> bool:
    return shutil.which("git") is not None and uv_works()


def tree_is_head() -> bool:
    """Whether the package, the lessons and the installer of this checkout equal the committed HEAD."""
    status = subprocess.run(["git", "status", "--porcelain", "--", *SOURCES], cwd=ROOT, capture_output=True,
                            text=True)
    return status.returncode == 0 and not status.stdout.strip()


def run_main(folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """Clone HEAD into ``folder/clone`` and run `COMMAND` there as a new user would: (the clone, the process)."""
    clone = folder / "clone"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", head.strip()], cwd=clone, check=True)
    done = subprocess.run(COMMAND.split(), cwd=clone, env=clean_env(), capture_output=True, text=True, timeout=1500)
    return clone, done


OUTCOME = "outcome.json"


def write_outcome(folder: Path, result, error: BaseException | None) -> None:
    """For the other pytest-xdist workers: the clone and its process, or the error (written last, atomically)."""
    if error is not None or result is None:
        outcome = dict(error=f"{type(error).__name__}: {error}")
    else:
        clone, done = result
        outcome = dict(clone=str(clone), args=done.args, returncode=done.returncode, stdout=done.stdout,
                       stderr=done.stderr)
    (folder / f"{OUTCOME}.part").write_text(json.dumps(outcome))
    (folder / f"{OUTCOME}.part").rename(folder / OUTCOME)


def read_outcome(folder: Path, timeout: float = 1800) -> tuple[Path, subprocess.CompletedProcess]:
    """What `write_outcome` wrote, waiting for it (the clone's main job takes minutes)."""
    path = Path(folder) / OUTCOME
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fresh clone's main job did not finish within {timeout:.0f} s ({path} absent)")
        time.sleep(1)
    outcome = json.loads(path.read_text())
    if "error" in outcome:
        raise RuntimeError(f"the fresh clone's main job failed in another worker: {outcome['error']}")
    return Path(outcome["clone"]), subprocess.CompletedProcess(outcome["args"], outcome["returncode"],
                                                               outcome["stdout"], outcome["stderr"])
