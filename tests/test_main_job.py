"""The main job on a bad day: a kernel message lost on the way, Ctrl+C, a full disk, a flag without its value, root.

No test here asserts a wall-clock time. The watchdog's tests make it fire in a fraction of a second and keep the
hang cap at minutes, so that a watchdog that did not work fails them with the hang cap's reason instead of the
watchdog's, rather than hanging.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
from processes import ctrl_c_reaches_it
from tiny_lessons import tiny_lesson

from cropkit.lessons import notebook, report, watchdog

ROOT = Path(__file__).resolve().parent.parent
HANG_CAP_S = 300  # far above what any cell here needs: reached only if the watchdog failed


class DroppingClient(watchdog.WatchdogClient):
    """The main job's client, but the kernel's execute_reply to a cell holding ``DROP-REPLY`` is thrown away as it
    arrives, ``drops`` times in all (a kernel message lost on the way)."""

    drops = 0

    def start_new_kernel_client(self):
        kc = super().start_new_kernel_client()
        get_msg = kc.shell_channel.get_msg

        async def get(timeout=None):
            msg = await get_msg(timeout=timeout)
            cell = self.nb.cells[self.cell_index] if 0 <= self.cell_index < len(self.nb.cells) else None
            if msg["msg_type"] == "execute_reply" and cell is not None and "DROP-REPLY" in cell.source \
                    and DroppingClient.drops > 0:
                DroppingClient.drops -= 1
                raise Empty  # as if nothing had come
            return msg

        kc.shell_channel.get_msg = get
        return kc


@pytest.fixture
def losing_lessons(tmp_path, monkeypatch):
    """Two lessons, the first with a cell whose reply the client loses; the main job's client is DroppingClient."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    tiny_lesson(folder, "00_loses", "x = 1  # DROP-REPLY")
    tiny_lesson(folder, "01_next", "y = 2")
    monkeypatch.setattr(notebook, "lessons_dir", lambda: folder)
    monkeypatch.setattr(watchdog.WatchdogEngine, "client", DroppingClient)
    return folder


def _run(tmp_path) -> dict:
    return notebook.run_all("smoke", tmp_path / "out", hang_cap_s=HANG_CAP_S, watchdog_s=0.5)


def test_a_lost_reply_restarts_the_lesson_once(losing_lessons, tmp_path, monkeypatch):
    monkeypatch.setattr(DroppingClient, "drops", 1)
    summary = _run(tmp_path)
    first = summary["00_loses"]
    assert "_error" not in first, f"the lesson should have been restarted by the watchdog: {first['_error']}"
    assert first["answer"] == 42 and first["_watchdog"]["restarts"] == 1
    (why,) = first["_watchdog"]["lost"]
    assert why.startswith("watchdog: cell") and "DROP-REPLY" in why and "the kernel reported idle" in why \
        and "execute_reply never arrived" in why
    assert summary["01_next"]["answer"] == 42 and summary["01_next"]["_watchdog"]["restarts"] == 0
    page = (tmp_path / "out" / "smoke" / "summary.html").read_text()
    assert '<span class="status warn">restarted</span>' in page and "the watchdog restarted this lesson" in page
    kept = json.loads((tmp_path / "out" / "smoke" / "summary.json").read_text())
    assert kept["00_loses"]["_watchdog"]["restarts"] == 1


def test_a_reply_lost_every_time_fails_the_lesson_and_the_job_goes_on(losing_lessons, tmp_path, monkeypatch):
    monkeypatch.setattr(DroppingClient, "drops", 10**6)
    summary = _run(tmp_path)
    error = summary["00_loses"].get("_error", "")
    assert error.startswith("LostMessage: watchdog: cell"), f"not the watchdog's failure: {error!r}"
    assert "execute_reply never arrived" in error and "lost again after 00_loses.ipynb was restarted once" in error
    assert summary["00_loses"]["_watchdog"]["restarts"] == 1 and len(summary["00_loses"]["_watchdog"]["lost"]) == 2
    assert summary["01_next"]["answer"] == 42, "the next lesson still ran"
    page = (tmp_path / "out" / "smoke" / "summary.html").read_text()
    assert "1 of 2 lessons failed" in page and "execute_reply never arrived" in page


def test_a_computing_cell_is_never_stopped_by_the_watchdog(tmp_path, monkeypatch):
    """busy, not idle: the kernel is working, however long the watchdog's patience is exceeded."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    tiny_lesson(folder, "00_computes", "import time\ntime.sleep(3)")
    monkeypatch.setattr(notebook, "lessons_dir", lambda: folder)
    summary = notebook.run_all("smoke", tmp_path / "out", hang_cap_s=HANG_CAP_S, watchdog_s=0.2)
    assert summary["00_computes"]["answer"] == 42 and summary["00_computes"]["_watchdog"]["restarts"] == 0


# ----------------------------------------------------------------------------- Ctrl+C

def test_ctrl_c_stops_the_kernel_and_writes_the_summary_of_what_finished(tmp_path):
    folder = tmp_path / "lessons"
    folder.mkdir()
    pid_file = tmp_path / "kernel.pid"
    tiny_lesson(folder, "00_fine", "x = 1")
    tiny_lesson(folder, "01_waits", f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                    "time.sleep(600)")
    tiny_lesson(folder, "02_never", "z = 3")
    script = ("import sys; from pathlib import Path; from cropkit import notebook; "
              "notebook.lessons_dir = lambda: Path(sys.argv[1]); sys.exit(notebook.main(sys.argv[2:]))")
    job = subprocess.Popen([sys.executable, "-c", script, str(folder), "--profile", "smoke", "--output",
                            str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=ctrl_c_reaches_it)
    try:
        while not (pid_file.exists() and pid_file.read_text()):
            assert job.poll() is None, job.communicate()
            time.sleep(0.2)
        kernel = int(pid_file.read_text())
        job.send_signal(signal.SIGINT)  # what Ctrl+C in the terminal sends (the kernel has its own session)
        out, err = job.communicate(timeout=HANG_CAP_S)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, (out[-2000:], err[-3000:])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    (said,) = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert "01_waits" in said
    page = (tmp_path / "out" / "smoke" / "summary.html").read_text()
    assert '<span class="status ok">ok</span>' in page and '<span class="status interrupted">interrupted</span>' in page
    assert "02_never" not in page, "no lesson runs after Ctrl+C"
    assert json.loads((tmp_path / "out" / "smoke" / "00_fine.json").read_text())["answer"] == 42
    assert not Path(f"/proc/{kernel}").exists() or "zombie" in Path(f"/proc/{kernel}/status").read_text(), \
        "the running lesson's kernel was left running"


# ----------------------------------------------------------------------------- a full disk

def test_a_full_disk_leaves_the_earlier_summary_whole(tmp_path):
    """RLIMIT_FSIZE = 0 makes every write that grows a file fail, as a full disk does."""
    (tmp_path / "summary.html").write_text("an earlier run's page")
    script = ("import resource, signal, sys; from cropkit.lessons import report; "
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); "
              "report.write_summary(sys.argv[1], {'00_tour': {'final_test_acc': 0.9}}, 'smoke')")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr[-2000:]
    assert (tmp_path / "summary.html").read_text() == "an earlier run's page"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.html"], "no temporary file is left behind"


def test_the_job_says_when_it_could_not_write_the_summary(tmp_path, monkeypatch, capsys):
    tiny_lesson(tmp_path, "00_x", "x = 1")
    monkeypatch.setattr(notebook, "_run_lesson", lambda *args, **kwargs: {"answer": 1})  # no kernel needed

    def full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_atomic", full)
    assert notebook.run_all("smoke", tmp_path / "out", directory=tmp_path) == {"00_x": {"answer": 1}}
    said = capsys.readouterr()
    assert "could not write the summary" in said.out + said.err and "No space left on device" in said.out + said.err


# ----------------------------------------------------------------------------- the command line

def test_only_without_a_prefix_is_an_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "00_a.ipynb").write_text("{}")  # were it run, it would fail and the job would exit with 1
    monkeypatch.setattr(notebook, "lessons_dir", lambda: tmp_path)
    assert notebook.main(["--profile", "smoke", "--output", str(tmp_path / "out"), "--only"]) == 2
    assert "--only needs at least one lesson prefix" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("uid, root", [("0", True), ("1000", False)])
def test_kit_lab_allows_root_only_for_root(tmp_path, uid, root):
    """`./kit lab` in a copy of the kit whose environment is a stub: `jupyter-lab` records its arguments, `id -u`
    answers ``uid``."""
    shutil.copy2(ROOT / "kit", tmp_path / "kit")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    stamp = subprocess.run("cat pyproject.toml | sha256sum | cut -c1-16", shell=True, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".venv" / ".cropkit-stamp").write_text(stamp + "\n")
    (bin_ / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "jupyter-lab").write_text('#!/bin/sh\necho "lab: $*"\n')
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for path in (bin_ / "python", bin_ / "jupyter-lab", fake / "id"):
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["./kit", "lab", "--port", "9999"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("lab:")]
    assert ("--allow-root" in line.split()) == root and "--port 9999" in line
    assert ("running as root" in done.stderr) == root
    if root:  # given by the user already: not twice
        again = subprocess.run(["./kit", "lab", "--allow-root"], cwd=tmp_path, env=env, capture_output=True,
                               text=True)
        assert again.stdout.split().count("--allow-root") == 1

