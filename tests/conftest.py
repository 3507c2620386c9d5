"""Shared fixtures. Notebooks are executed once per session and their JSON shared by every test that checks it."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# `./kit test` runs the suite in two pytest-xdist workers (`-n 2`): each takes its share of the cores
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))


# The fast lane (`./kit test -m "not slow"`, CONTRIBUTING) leaves out what takes seconds rather than milliseconds:
# whatever executes a lesson (the fixtures below), starts a kernel, a browser, a cluster or worker processes, or runs
# the claims or the benchmarks. Marked here, in one place, rather than test by test.
SLOW_FIXTURES = {"run_notebook", "fresh_clone", "smoke_dir"}
SLOW_MODULES = {"test_browser", "test_browser_lesson", "test_main_job", "test_sweep", "test_benchmarks", "test_claims",
                "test_slurm", "test_paper_path", "test_notebooks_01_02", "test_first_contact"}
SLOW_TESTS = {"test_runs_under_smoke_and_writes_json", "test_over_budget_is_a_warning_recorded_in_the_results",
              "test_missing_and_corrupt_cifar_are_error_lines",
              "test_ctrl_c_stops_every_worker_promptly_and_keeps_finished_runs",
              "test_a_run_killed_after_any_epoch_resumes_to_the_uninterrupted_result",
              "test_compare_in_worker_processes_gives_the_same_runs",
              "test_compare_in_worker_processes_replays_from_the_cache_without_starting_workers",
              "test_first_run_of_a_process_is_timed_after_the_warm_up",
              "test_a_structured_method_runs_on_the_depth_scenes",
              "test_every_unstructured_method_runs_on_it", "test_earlycrop_u_runs_on_lunarlander"}


# Under pytest-xdist (`--dist loadgroup`), the tests of one group run in one worker: one SLURM cluster per session
# (its daemons hold fixed ports), one browser at a time.
GROUPS = {"test_slurm": "slurm", "test_browser": "browser", "test_browser_lesson": "browser", "test_pages": "browser"}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or module in SLOW_MODULES
                or item.originalname in SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
        if module in GROUPS:
            item.add_marker(pytest.mark.xdist_group(GROUPS[module]))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny smoke models run faster on one thread than on two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_CLONE: dict = {}  # the README's main command in a fresh clone, started in the background (`pytest_collection_finish`)


def _worker(config) -> str | None:
    """This process's pytest-xdist worker id ("gw0", …), None without xdist or in its controller."""
    return getattr(config, "workerinput", {}).get("workerid")


_SHARED: dict = {}  # in pytest-xdist's controller: the fresh clone's folder it gives every worker


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist's controller, per worker: one folder for the fresh clone, the same for every worker."""
    if "folder" not in _SHARED:
        _SHARED["folder"] = tempfile.mkdtemp(prefix="cropkit-fresh-clone-")
    node.workerinput["cropkit_clone"] = _SHARED["folder"]


def pytest_collection_finish(session):
    """Once the tests are known: when one of them needs the fresh clone's main job (its own test, or the lessons'
    tests that read its outputs), start it now in a thread, so that its ~100 s (a venv and a kernel per lesson, one
    core) run beside the fast tests instead of after them. Under pytest-xdist every worker collects every test: the
    first worker runs the clone and writes its outcome where the others read it (`fresh_clone`)."""
    import fresh_clone as fc

    if session.config.option.collectonly:
        return
    needs = [set(getattr(item, "fixturenames", ())) for item in session.items]
    direct = any("fresh_clone" in n for n in needs)
    lessons = any({"run_notebook", "smoke_dir"} & n for n in needs)
    if not (direct or (lessons and not os.environ.get("CROPKIT_TEST_OUTPUT") and fc.tree_is_head())) \
            or not fc.available():
        return
    worker = _worker(session.config)
    if worker is None:
        folder = Path(tempfile.mkdtemp(prefix="cropkit-fresh-clone-"))
    else:
        folder = Path(session.config.workerinput["cropkit_clone"])
        _CLONE.update(folder=folder, shared=True)
        if worker != "gw0":
            return

    def work():
        try:
            _CLONE["result"] = fc.run_main(folder)
        except BaseException as error:  # raised by the fixture, in the test that needs it
            _CLONE["error"] = error
        if _CLONE.get("shared"):
            fc.write_outcome(folder, _CLONE.get("result"), _CLONE.get("error"))

    _CLONE.update(folder=folder, thread=threading.Thread(target=work, name="fresh-clone", daemon=True))
    _CLONE["thread"].start()


def pytest_sessionfinish(session):
    if "thread" in _CLONE:  # a worker whose tests ended first still owes the others the clone's outcome
        _CLONE["thread"].join(timeout=None if _CLONE.get("shared") else 5)
    if "folder" in _CLONE and not _CLONE.get("shared"):  # a shared one is the controller's to remove
        shutil.rmtree(_CLONE["folder"], ignore_errors=True)
    if "folder" in _SHARED:  # the controller, once every worker has finished
        shutil.rmtree(_SHARED["folder"], ignore_errors=True)


@pytest.fixture(scope="session")
def fresh_clone(tmp_path_factory):
    """The README's main command run in a fresh clone of HEAD (`fresh_clone.run_main`), once per session: (the
    clone, the finished process); None without git and uv. Started at collection when the session needs it."""
    import fresh_clone as fc

    if "thread" in _CLONE:
        _CLONE["thread"].join()
        if "error" in _CLONE:
            raise _CLONE["error"]
        return _CLONE["result"]
    if _CLONE.get("shared"):  # another worker runs it
        return fc.read_outcome(_CLONE["folder"])
    if not fc.available():
        return None
    return fc.run_main(tmp_path_factory.mktemp("fresh"))


def _shared_with_the_clone(request) -> bool:
    """Whether the lessons' smoke outputs come from the fresh clone's main job: it can run, this checkout's lessons
    and package are HEAD's, and no output folder was asked for (CROPKIT_TEST_OUTPUT)."""
    import fresh_clone as fc

    return not os.environ.get("CROPKIT_TEST_OUTPUT") and fc.available() and fc.tree_is_head()


@pytest.fixture(scope="session")
def smoke_dir(request, tmp_path_factory) -> Path:
    """Where smoke-profile notebook outputs are: the fresh clone's ``outputs/smoke`` when the clone ran this
    checkout's lessons (`fresh_clone`), else a folder of this session. Set CROPKIT_TEST_OUTPUT to keep them."""
    keep = os.environ.get("CROPKIT_TEST_OUTPUT")
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if _shared_with_the_clone(request):
        clone, _ = request.getfixturevalue("fresh_clone")
        return clone / "outputs" / "smoke"
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="session")
def run_notebook(request, smoke_dir):
    """run_notebook("02_rich_to_lazy") → the JSON that notebook wrote under the smoke profile (executed once per
    session: by the fresh clone's main job when it ran this checkout's lessons, else here)."""
    from cropkit.lessons import notebook

    cache: dict[str, dict] = {}
    shared = _shared_with_the_clone(request)

    def run(stem: str) -> dict:
        if stem not in cache:
            path = ROOT / "notebooks" / f"{stem}.ipynb"
            written = smoke_dir / f"{stem}.json"
            if shared and written.exists():
                cache[stem] = json.loads(written.read_text())
            else:  # a lesson that failed in the clone runs here, so that its test shows the error
                cache[stem] = notebook.execute(path, profile="smoke", output_dir=smoke_dir)
        return cache[stem]

    return run


@pytest.fixture(scope="session")
def cifar_files(tmp_path_factory) -> tuple[Path, dict]:
    """A data root holding tiny CIFAR-10 and CIFAR-100 sets in torchvision's on-disk format (`cifar_files.py`),
    written once per session, and the checksums torchvision must be given to accept them."""
    from cifar_files import write_cifar

    root = tmp_path_factory.mktemp("cifar-data")
    return root, {"cifar10": write_cifar(root, "cifar10"),
                  "cifar100": write_cifar(root, "cifar100", train_per_class=2, test_per_class=1)}


@pytest.fixture
def cifar_root(cifar_files, monkeypatch, tmp_path) -> Path:
    """The tiny CIFAR data root, accepted by torchvision in this process and in the kernels and processes it
    starts, and made the default data root (``$CROPKIT_DATA``) for the test."""
    from cifar_files import use_checksums

    root, checksums = cifar_files
    use_checksums(monkeypatch, checksums, tmp_path / "sitecustomize")
    monkeypatch.setenv("CROPKIT_DATA", str(root))
    return root
