"""A new user's first contact: the README's main command in a fresh clone, a lesson run by plain papermill from
any folder, the wheel with its lessons, Colab/Binder's install cell, papermill's parameter conventions, and a main
job that reports a failed lesson instead of dying."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import fresh_clone as fc
import nbformat
import pytest
from tiny_lessons import tiny_lesson

from cropkit import cli, paths
from cropkit.lessons import lesson_parameters, notebook, pairs

ROOT = Path(__file__).resolve().parent.parent
LESSONS = notebook.notebooks(ROOT / "notebooks")
STEMS = [p.stem for p in LESSONS]


_clean_env = fc.clean_env


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


_uv_works = fc.uv_works


def _tiny_lesson(folder: Path, name: str, body: str) -> Path:
    """A lesson with the same contract as the real ones, but a one-line body: a kernel start and nothing more."""
    return tiny_lesson(folder, name, body)


# ----------------------------------------------------------------------------- papermill's conventions

@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_papermill_sees_every_parameter_with_its_type_and_help(path):
    import papermill

    cell = next(c for c in nbformat.read(str(path), as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [node.targets[0].id for node in ast.parse(cell.source).body]
    seen = papermill.inspect_notebook(str(path))
    assert list(seen) == assigned, "papermill skips a parameter line (an '=' inside its comment?)"
    assert all(p["help"] and p["inferred_type_name"] != "None" for p in seen.values()), seen
    shown = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    for name, p in seen.items():
        assert f"{name}: {p['inferred_type_name']}" in shown and p["help"][:40] in shown


def test_a_comment_with_equals_is_refused(tmp_path):
    path = _tiny_lesson(tmp_path, "00_eq", "pass")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].source += "\nSEED = 0  # type: int  seed; 0 = the default"
    nbformat.write(nb, str(path))
    with pytest.raises(ValueError, match="cannot read.*SEED.*keep `=` out"):
        lesson_parameters.parameters(path)


@pytest.mark.parametrize("stem, given", [("02_rich_to_lazy", {"REF_TAU": "high"}), ("00_tour", {"SEED": "0"}),
                                         ("00_tour", {"EPOCHS": 2.5}), ("03_lottery_vs_earlycrop", {"SEEDS": 3}),
                                         ("00_tour", {"SEED": True}), ("02_rich_to_lazy", {"REF_TAU": None})])
def test_a_value_of_the_wrong_type_is_rejected_before_a_kernel_starts(tmp_path, stem, given):
    with pytest.raises(ValueError, match=f"{next(iter(given))} must be"):
        notebook.execute(ROOT / "notebooks" / f"{stem}.ipynb", profile="smoke", output_dir=tmp_path, parameters=given)
    assert not list(tmp_path.iterdir()), "nothing may run when a parameter has the wrong type"


def test_none_and_matching_types_are_accepted():
    """None where the type comment allows it (`int|None`), an int for a float, a tuple for a list."""
    path = ROOT / "notebooks" / "02_rich_to_lazy.ipynb"
    lesson_parameters.check_parameters(path, {"THREADS": None, "LIMIT": None, "TAU": 1, "TRY_LRS": (1e-3,),
                                              "DATA": "digits", "SEED": 3})


# ----------------------------------------------------------------------------- paths

@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lessons_write_only_through_the_output_helper(path):
    source = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    assert "Path(OUTPUT_DIR)" not in source and "OUTPUT_DIR}/" not in source
    for call in re.findall(r"\.save(?:fig)?\(([^,)]*)", source):
        assert call.startswith(("ck.paths.output_file(", "gif_path")), f"{path.name} writes {call} outside the helper"


def test_a_relative_output_dir_is_the_checkouts_else_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.lesson_output("rel") == ROOT / "rel" and (ROOT / "rel").is_dir()
    (ROOT / "rel").rmdir()
    monkeypatch.setattr(paths, "checkout", lambda: None)  # an installed wheel, Colab
    assert paths.output_file("out/sub", "x.png") == tmp_path / "out" / "sub" / "x.png"
    assert (tmp_path / "out" / "sub").is_dir()
    assert paths.lesson_output(tmp_path / "abs") == tmp_path / "abs"


def test_plain_papermill_runs_lesson_00_from_an_empty_folder(tmp_path):
    """What JupyterLab, Colab and a user's `papermill` do, as the README writes it: the values in the parameters cell
    (papermill reads no sidecar), one of them changed with -p, the default relative OUTPUT_DIR, a kernel in some other
    folder. It must run, and write its figure and JSON where lesson_output says."""
    command = "papermill notebooks/00_tour.ipynb /tmp/00_tour.ipynb -p EPOCHS 2"
    assert command in (ROOT / "README.md").read_text()
    cwd = tmp_path / "empty"
    cwd.mkdir()
    before = _listing(ROOT / "notebooks")
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "00_tour.ipynb"),
                           "executed.ipynb", "-p", "EPOCHS", "2"], cwd=cwd, capture_output=True, text=True,
                          env=_clean_env(PYTHONPATH=str(ROOT)), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = paths.lesson_output("outputs")
    for name in ("00_tour.json", "00_tour_learning_curve.png"):
        assert (out / name).stat().st_mtime >= start - 1, f"{name} not written to {out}"
    result = json.loads((out / "00_tour.json").read_text())
    cell = lesson_parameters.declared_parameters(ROOT / "notebooks" / "00_tour.ipynb")
    assert result["profile"] == "cpu" and result["epochs"] == 2 and len(result["history"]) == 2
    assert (result["data"], result["model"], result["width"]) == (cell["DATA"], cell["MODEL"], cell["WIDTH"])
    assert _listing(cwd) == {"executed.ipynb"}
    assert _listing(ROOT / "notebooks") == before, "nothing may be written under notebooks/"


# ----------------------------------------------------------------------------- the main job

@pytest.fixture
def tiny_lessons(tmp_path, monkeypatch):
    folder = tmp_path / "lessons"
    folder.mkdir()
    _tiny_lesson(folder, "00_fine", "x = 1")
    _tiny_lesson(folder, "01_broken", "raise RuntimeError('this lesson is broken on purpose')")
    _tiny_lesson(folder, "02_slow", "import time\ntime.sleep(1)")  # over the 0.5 s budget below
    _tiny_lesson(folder, "03_hangs", "import time\ntime.sleep(600)")
    _tiny_lesson(folder, "04_talks", "import time\nfor i in range(24):\n    print(i, flush=True)\n    time.sleep(0.5)")
    monkeypatch.setattr(notebook, "lessons_dir", lambda: folder)
    return folder


def test_main_job_reports_a_failed_lesson_and_goes_on(tiny_lessons, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(notebook.BUDGET_S, "smoke", 0.5)  # 02_slow sleeps longer: a warning, never an error
    assert notebook.main(["--profile", "smoke", "--output", "rel", "--only", "00", "01", "02",
                          "--hang-cap", "600"]) == 1, "a failed lesson makes the job fail"
    out = tmp_path / "rel" / "smoke"  # --output is relative to the caller's folder
    assert json.loads((out / "00_fine.json").read_text())["answer"] == 42
    assert json.loads((out / "02_slow.json").read_text())["answer"] == 42, "the lesson after the failure ran"
    assert not (out / "01_broken.json").exists()
    page = (out / "summary.html").read_text()
    assert "1 of 3 lessons failed" in page and "this lesson is broken on purpose" in page and "RuntimeError" in page
    assert "over its time budget" in page and '<span class="status warn">over budget</span>' in page
    for stem in ("00_fine", "01_broken", "02_slow"):
        assert (out / f"{stem}.html").exists() and f'<a href="{stem}.html">' in page
    assert "this lesson is broken on purpose" in (out / "01_broken.html").read_text()
    kept = json.loads((out / "summary.json").read_text())
    assert kept["02_slow"]["_over_budget"] and kept["00_fine"]["_watchdog"]["restarts"] == 0


def test_a_hanging_cell_is_stopped_by_the_hang_cap(tiny_lessons, tmp_path):
    """The hang cap is the last resort against a cell that never ends; it is explicit and configurable."""
    assert notebook.main(["--profile", "smoke", "--output", str(tmp_path), "--only", "03", "--hang-cap", "6"]) == 1
    page = (tmp_path / "smoke" / "summary.html").read_text()
    assert re.search(r"03_hangs</a>: <code>[^<]*(?i:timeout|timed out)", page), "the hang is reported as such"


def test_a_slow_cell_that_reports_progress_is_not_a_hang(tiny_lessons, tmp_path):
    """The cap counts from a cell's last output: a cell printing every 0.5 s for 12 s outlives an 8 s cap (a busy
    machine's slow sweep whose progress bar moves), while the silent one above is stopped (the cap leaves the
    lesson's other cells, e.g. importing cropkit on a loaded machine, room)."""
    assert notebook.main(["--profile", "smoke", "--output", str(tmp_path), "--only", "04", "--hang-cap", "8"]) == 0
    assert json.loads((tmp_path / "smoke" / "04_talks.json").read_text())["answer"] == 42


def test_the_kernel_is_not_ipykernel_7():
    import ipykernel

    assert int(ipykernel.__version__.split(".")[0]) < 7, \
        "ipykernel 7 can drop a cell's request and hang (pyproject.toml)"


def test_only_matching_nothing_is_an_error_and_keeps_the_summary(tiny_lessons, tmp_path, capsys):
    summary = tmp_path / "smoke" / "summary.html"
    summary.parent.mkdir()
    summary.write_text("an earlier run")
    assert notebook.main(["--profile", "smoke", "--output", str(tmp_path), "--only", "99"]) == 2
    assert "no lesson matches ['99']" in capsys.readouterr().err
    assert summary.read_text() == "an earlier run"
    with pytest.raises(ValueError, match="no lesson"):
        notebook.run_all("smoke", tmp_path, only=["7"])


def test_no_lessons_found_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "lessons_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="no lessons found"):
        notebook.run_all("smoke", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- Colab, Binder, packaged lessons

@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_first_code_cell_installs_only_on_a_hosted_service(path, monkeypatch):
    first = next(c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    assert first.source == pairs.install_cell_source()
    assert pairs.REPOSITORY_URL in first.source

    def run_cell(env: dict, importable: bool) -> list:
        calls = []
        monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd))
        for key in ("COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REQUEST"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        import importlib.util
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if importable else None)
        exec(first.source, {})
        return calls

    assert run_cell({}, importable=False) == [], "a no-op outside Colab and Binder"
    assert run_cell({"COLAB_RELEASE_TAG": "x"}, importable=True) == [], "nothing to do when cropkit is there"
    for env in ({"COLAB_RELEASE_TAG": "x"}, {"BINDER_SERVICE_HOST": "x"}):
        (cmd,) = run_cell(env, importable=False)
        assert cmd[1:4] == ["-m", "pip", "install"] and cmd[-1] == f"cropkit @ git+{pairs.REPOSITORY_URL}"


def test_readme_and_binder_point_at_the_one_repository_url():
    readme = (ROOT / "README.md").read_text()
    repo = pairs.REPOSITORY_URL.removeprefix("https://github.com/")
    for stem in STEMS:
        assert f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{stem}.ipynb" in readme
        assert f"https://mybinder.org/v2/gh/{repo}/main?labpath=notebooks%2F{stem}.ipynb" in readme
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in requirements and re.search(r"^torch$", requirements, re.M)
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK) and "pip install --no-cache-dir -e ." in post.read_text()


def _with_sidecars(lessons) -> list[str]:
    """The names of the lessons and of their sidecars of profile values, sorted."""
    return sorted(p.name for lesson in lessons
                  for p in (lesson, lesson_parameters.sidecar(lesson)) if p.exists())


def test_copy_lessons_and_the_lessons_command(tmp_path, capsys):
    dest = tmp_path / "mine"
    assert cli.main(["lessons", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == _with_sidecars(LESSONS)
    assert any(name.endswith(".profiles.json") for name in _with_sidecars(LESSONS))
    assert "00_tour.ipynb" in capsys.readouterr().out
    (dest / "00_tour.ipynb").write_text("my edits")
    assert cli.main(["lessons", str(dest)]) == 2, "a learner's edited lesson is never replaced silently"
    assert "already in" in capsys.readouterr().err and (dest / "00_tour.ipynb").read_text() == "my edits"
    notebook.copy_lessons(dest, overwrite=True)
    assert (dest / "00_tour.ipynb").read_bytes() == (ROOT / "notebooks" / "00_tour.ipynb").read_bytes()


def _source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored), without build leftovers."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.skipif(shutil.which("git") is None or not _uv_works(), reason="needs git and uv (./kit installs uv)")
def test_the_wheel_carries_the_lessons_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel, install it into a fresh venv and run from a folder outside the checkout. The venv borrows
    the kit venv's dependencies (6 GB of PyTorch) through a plain .pth line; that line adds no .pth of its own, so
    the kit's editable cropkit stays invisible and only the wheel's cropkit can be imported."""
    src = _source_copy(tmp_path / "src")
    uv = ["python3", "-m", "uv"]
    subprocess.run(uv + ["build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(src)], check=True)
    (wheel,) = (tmp_path / "dist").glob("cropkit-*.whl")
    packaged = [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("cropkit/lessons/notebooks/")]
    assert sorted(packaged) == [f"cropkit/lessons/notebooks/{name}" for name in _with_sidecars(LESSONS)]

    venv = tmp_path / "venv"
    subprocess.run(uv + ["venv", "--quiet", str(venv), "--python", sys.executable], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    deps = next(p for p in sys.path
                if p.endswith("site-packages") and Path(p).is_dir() and (Path(p) / "torch").is_dir())
    (site / "kit_dependencies.pth").write_text(deps + "\n")
    subprocess.run(uv + ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps",
                         str(wheel)], check=True)

    work = tmp_path / "work"
    work.mkdir()
    # nbconvert's HTML templates are data files of the kit venv, outside the borrowed site-packages
    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"),
                     JUPYTER_PATH=str(Path(deps).parents[2] / "share" / "jupyter"))
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import cropkit, cropkit.paths as p; print(cropkit.__file__, p.checkout())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == "None", f"not the wheel's cropkit: {where}"

    copied = subprocess.run([str(venv / "bin" / "cropkit"), "lessons", "mine"], cwd=work, env=env,
                            capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    assert sorted(p.name for p in (work / "mine").iterdir()) == _with_sidecars(LESSONS)
    ran = subprocess.run([python, "-m", "cropkit.lessons.notebook", "--profile", "smoke", "--only", "00",
                          "--output", "out"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads((work / "out" / "smoke" / "00_tour.json").read_text())
    assert result["profile"] == "smoke" and result["final_train_loss"] < result["first_train_loss"]
    smoke = json.loads(lesson_parameters.sidecar(ROOT / "notebooks" / "00_tour.ipynb").read_text())["smoke"]
    assert result["epochs"] == smoke["EPOCHS"], "the packaged sidecar's smoke values were applied"
    assert (work / "out" / "smoke" / "00_tour.html").exists() and (work / "out" / "smoke" / "summary.html").exists()


@pytest.mark.skipif(not fc.available(), reason="needs git and uv (./kit installs uv)")
def test_readme_main_command_in_a_fresh_clone(fresh_clone):
    """`./kit main --profile smoke` exactly as the README writes it, in a fresh clone of the committed HEAD (work
    not yet committed is not in it), which builds its own .venv. Every lesson's JSON, HTML and the summary page
    must appear under the clone's outputs/smoke/, and the clone's git status must stay clean: nothing written outside
    the ignored outputs/, data/ and .venv/, and nothing at all under notebooks/."""
    assert fc.COMMAND in (ROOT / "README.md").read_text()
    clone, done = fresh_clone  # the session's one run (tests/fresh_clone.py); its lessons' outputs feed their tests
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    out = clone / "outputs" / "smoke"
    page = (out / "summary.html").read_text()
    assert '<div class="failed">' not in page, "a lesson failed"
    for stem in STEMS:
        assert json.loads((out / f"{stem}.json").read_text())["profile"] == "smoke"
        assert (out / f"{stem}.html").exists() and f'<a href="{stem}.html">' in page and f'id="{stem}"' in page
    status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert not [line for line in status if not line.startswith("!! ")], f"files changed or left behind: {status}"
    ignored = {line[3:] for line in status}
    assert ignored <= {".venv/", "outputs/", "cropkit.egg-info/"} and "outputs/" in ignored, ignored


def test_sync_takes_a_lesson_prefix_and_says_what_it_does_not_know(capsys):
    """`./kit main --sync 02` names a lesson as `--only` does; a name matching no lesson is an error, no traceback."""
    assert notebook.main(["--sync", "99"]) == 2
    err = capsys.readouterr().err
    assert "--sync 99: no lesson match" in err and "02_rich_to_lazy" in err and "Traceback" not in err
    assert notebook._lesson_path("02") == notebook.lessons_dir() / "02_rich_to_lazy.ipynb"
